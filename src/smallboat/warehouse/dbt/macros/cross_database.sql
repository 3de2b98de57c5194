{#
    The project's cross-database macros: one per difference between the warehouses the same model
    files run on (DuckDB, Spark, Snowflake), where dbt's own `dbt.*` macros have none. Each is
    dispatched (`adapter.dispatch`), so a model says what it needs once and every adapter renders
    its own SQL: `default__` serves DuckDB and Snowflake, `spark__` Spark (Databricks, EMR).
#}

{#
    A landing table, as the staging models read it. On DuckDB and Snowflake it is the `landing`
    source itself (DuckDB reads the Parquet in place through the source's external_location). Spark
    reads the same Parquet files directly: `parquet.`<landing>/<table>/*.parquet``, where
    <landing> is SMALLBOAT_SPARK_LANDING (storage a cluster reads, such as s3://bucket/landing) or
    else SMALLBOAT_HOME/landing. The source is still named, so dbt's lineage (and `dbt ls`) shows
    it as on every other adapter.
#}
{% macro landing_table(table) %}
    {{ return(adapter.dispatch('landing_table')(table)) }}
{% endmacro %}

{% macro default__landing_table(table) %}
    {{ return(source('landing', table)) }}
{% endmacro %}

{% macro spark__landing_table(table) %}
    {%- set named = source('landing', table) -%}
    {%- set landing = env_var('SMALLBOAT_SPARK_LANDING', '') or env_var('SMALLBOAT_HOME') ~ '/landing' -%}
    {{ return("parquet.`" ~ landing.rstrip('/') ~ "/" ~ table ~ "/*.parquet`") }}
{% endmacro %}

{#
    An 8-byte float: `double precision` in DuckDB and Snowflake; Spark knows only `double`
    (`dbt.type_float()` is a 4-byte float on both DuckDB and Spark).
#}
{% macro type_double() %}
    {{ return(adapter.dispatch('type_double')()) }}
{% endmacro %}

{% macro default__type_double() %}
    {{ return('double precision') }}
{% endmacro %}

{% macro spark__type_double() %}
    {{ return('double') }}
{% endmacro %}
