"""The core library: models, kernels, statistics, convergence, persistence, validation.

numpy, scipy, numba and, imported where first used, scikit-learn (:mod:`hmm.core.estimator`); nothing here
imports Spark, pyarrow, boto3, Airflow or matplotlib, nor any other layer of hmm. The EM
protocol every emission model fulfils is in :mod:`hmm.core.base`.
"""
