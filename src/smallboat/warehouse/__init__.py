"""The DuckDB warehouse and the dbt project that transforms landing files into marts."""
