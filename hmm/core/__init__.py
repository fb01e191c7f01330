"""The core library: models, kernels, statistics, convergence, persistence, validation.

numpy, scipy, numba and scikit-learn (where hmmlearn compatibility needs it); nothing here
imports Spark, pyarrow, boto3, Airflow or matplotlib, nor any other layer of hmm. The EM
protocol every emission model fulfils is in :mod:`hmm.core.base`.
"""
