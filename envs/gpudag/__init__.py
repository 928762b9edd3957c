"""DAG jobs on heterogeneous GPU clusters (HEFT's domain): types, generators, core, env, validator."""
