"""The nightly sweep: cores in, a hive-partitioned Parquet dataset of SweepRecords out."""
