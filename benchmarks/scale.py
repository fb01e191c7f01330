"""Scale on paper: minutes and dollars per EM iteration on EMR, from figures measured here.

Run by hand (prints the Markdown table of ``benchmarks/README.md``, "Scale on paper")::

    python benchmarks/scale.py
    python benchmarks/scale.py --spark-seconds 1.40 --fixed-seconds 20   # after a speed change

Nothing is timed: the inputs are figures measured on this machine (defaults, each with where it
comes from) plus two stated assumptions that cannot be measured here (YARN's executor start and
the instance prices). An iteration on a cluster of ``n`` core nodes of ``v`` vCPUs each takes

    fixed + observations / (throughput per vCPU x n x v)

and costs ``(n + 1 master) x (EC2 + EMR price per hour) x that time``: the cluster is billed
for the whole step, fixed cost included.
"""

from __future__ import annotations

import argparse

#: Parquet bytes per observation of the benchmark data (categorical, F=20, T=100): 66 MB for
#: 10^8 observations (``du`` of benchmarks/spark.py's 1M data set).
PARQUET_BYTES_PER_OBSERVATION = 0.66
#: On-demand us-east-1 list prices per hour (EC2 + the EMR fee) of 4-vCPU nodes. m5.xlarge: as in
#: infra/README.md; m7i/m7g EMR fees taken as 25% of EC2, as m5's is.
PRICES = {"m5.xlarge": 0.192 + 0.048, "m7i.xlarge": 0.2016 + 0.0504, "m7g.xlarge": 0.1632 + 0.0408}
VCPUS_PER_NODE = 4
#: Sizes of the table: (observations, core nodes to show).
SIZES = ((10**9, (1, 2, 4, 8)), (10**10, (2, 4, 8, 16, 32)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--spark-seconds",
        type=float,
        default=0.873,
        help="seconds per iteration of 10^8 observations (1M x 100, K=10, F=20) on local[2] with the split "
        "cache off: an EMR step's executors decode the Parquet unless their node read the split before "
        "(benchmarks/spark.py --compare-split-cache at c52d221, the median of three runs: 0.859, 0.873, 0.896; "
        "0.657-0.681 with the cache)",
    )
    parser.add_argument(
        "--k30-library-seconds",
        type=float,
        default=0.0068,
        help="library seconds per iteration, K=30 F=20 1000 x 100, one thread (make bench at c52d221)",
    )
    parser.add_argument(
        "--library-seconds",
        type=float,
        default=1.098,
        help="library seconds per iteration of the K=10 1M data, one thread (benchmarks/spark.py at c52d221, "
        "the same runs: 1.094, 1.098, 1.142)",
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=7.9 + 4.7,
        help="a spark-submit step's fixed cost with cold Python workers (benchmarks/dag.py at af31879: "
        "7.9 s launch + imports + session + exit, 4.7 s first action starting the workers)",
    )
    parser.add_argument(
        "--yarn-seconds", type=float, default=15.0, help="ASSUMED: YARN allocating the step's executors"
    )
    parser.add_argument(
        "--airflow-seconds",
        type=float,
        default=8.3,
        help="Airflow per iteration in EMR mode beyond the step, under the real scheduler "
        "(benchmarks/emr_airflow.py at 78ed2b2: median 8.27 s)",
    )
    args = parser.parse_args()
    fixed = args.step_seconds + args.yarn_seconds + args.airflow_seconds
    k10 = 1e8 / args.spark_seconds / 2
    # Spark's overhead over the library (the ratio at K=10) applied to the library's K=30 throughput.
    spark_overhead = args.spark_seconds * 2 / args.library_seconds
    k30 = 1e5 / args.k30_library_seconds / spark_overhead
    print(
        f"Throughput per vCPU in a Spark E-step: K=10 {k10:.3g} observations/s, K=30 {k30:.3g}; fixed cost per "
        f"iteration {fixed:.1f} s ({args.step_seconds:.1f} step + {args.yarn_seconds:.0f} YARN, assumed + "
        f"{args.airflow_seconds:.1f} Airflow)\n"
    )
    names = list(PRICES)
    print(
        "| observations | K | Parquet per pass | vCPU-s of E-step | core nodes (vCPUs) | E-step | min per iteration | "
        + " | ".join(f"$ per iteration, {name}" for name in names)
        + " |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names))
    for observations, node_counts in SIZES:
        for k, throughput in ((10, k10), (30, k30)):
            work = observations / throughput
            for nodes in node_counts:
                estep = work / (nodes * VCPUS_PER_NODE)
                seconds = fixed + estep
                dollars = [(nodes + 1) * PRICES[name] * seconds / 3600 for name in names]
                parquet_gb = observations * PARQUET_BYTES_PER_OBSERVATION / 1e9
                print(
                    f"| 10^{len(str(observations)) - 1} | {k} | {parquet_gb:.1f} GB "
                    f"| {work:,.0f} | {nodes} ({nodes * VCPUS_PER_NODE}) | {estep:.1f} s | {seconds / 60:.2f} | "
                    + " | ".join(f"{d:.3f}" for d in dollars)
                    + " |"
                )


if __name__ == "__main__":
    main()
