from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="sparkml_dist",
    version="0.1.0",
    description="Distributed machine-learning algorithms (boosting, SVM, clustering, deep learning, RL) on Apache Spark",
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
        # the cascade SVM's warm-startable SMO solver and fused kernels (C speed without a build step)
        "numba>=0.60",
        # install torch==2.13.0 (CPU) first: a bare `torch` requirement pulls a multi-GB CUDA build
        "torch>=2.4",
        "gymnasium>=1.0",
        "ale-py>=0.9",
        "pyyaml>=6",
        "matplotlib>=3.7",
    ],
    # mlflow-skinny: MLflow's tracking client and model flavours without its server/UI deps (full `mlflow` 3.x pins
    # pyarrow<26); `pip install mlflow` works as well where that pin fits
    extras_require={"test": ["pytest>=8", "mlflow-skinny>=3,<4"], "dev": ["pytest>=8", "ruff"],
                    "mlflow": ["mlflow-skinny>=3,<4"]},
    entry_points={"console_scripts": ["sparkml-dist=sparkml_dist.cli:main"]},
)
