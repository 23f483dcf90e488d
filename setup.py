from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="sparkml_dist",
    version="0.1.0",
    description="Distributed machine-learning algorithms (boosting, SVM, k-means, fuzzy and consensus clustering, "
                "data-parallel deep learning, distributed deep RL) on Apache Spark",
    long_description=Path(__file__).with_name("README.md").read_text() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["sparkml_dist", "sparkml_dist.*"]),
    package_data={"sparkml_dist": ["py.typed"]},
    install_requires=[
        "pyspark>=4.0,<5",
        "pyarrow>=15",
        "numpy>=1.26",
        "pandas>=2.0,<3",
        "scikit-learn>=1.4",
        "scipy>=1.10",
        "threadpoolctl>=3",  # one BLAS thread in the RL driver loop (scikit-learn needs it too)
        # the cascade SVM's warm-startable SMO solver and fused kernels (C speed without a build step)
        "numba>=0.60",
        # barrier collectives (torch.distributed gloo); install torch==2.13.0 (CPU) first: a bare `torch`
        # requirement pulls a multi-GB CUDA build
        "torch>=2.4",
        "pyyaml>=6",
        "matplotlib>=3.7",
    ],
    extras_require={
        # the RL family's environments (sparkml_dist.rl): gymnasium's classic control and ALE (ale-py ships ROMs)
        "rl": ["gymnasium>=1.0", "ale-py>=0.9"],
        # MLflow tracking (sparkml_dist.tracking). mlflow-skinny: the tracking client and model flavours without the
        # server/UI deps (full `mlflow` 3.x pins pyarrow<26); `pip install mlflow` works as well where that pin fits
        "mlflow": ["mlflow-skinny>=3,<4"],
        "test": ["pytest>=8", "gymnasium>=1.0", "ale-py>=0.9", "mlflow-skinny>=3,<4"],
        # `make lint`: ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade) and mypy, configured in .ruff.toml
        # and .mypy.ini
        "lint": ["ruff>=0.6", "mypy>=1.10", "types-PyYAML"],
        "dev": ["pytest>=8", "ruff>=0.6", "mypy>=1.10", "types-PyYAML"],
    },
    entry_points={"console_scripts": ["sparkml-dist=sparkml_dist.cli:main"]},
)
