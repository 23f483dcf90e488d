"""spark-submit entry: a benchmark suite and its report (see sparkml_dist/bench/suite.py).

    spark-submit --master spark://127.0.0.1:7077 jobs/bench.py --suite quick --out out/bench
"""

import sys

from sparkml_dist.bench.suite import script_main

if __name__ == "__main__":
    sys.exit(script_main())
