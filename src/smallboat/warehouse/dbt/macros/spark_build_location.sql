{#
    Where a Spark build's schemas live. `smallboat transform` builds each Spark build into schemas
    of its own (SMALLBOAT_SPARK_SCHEMA, a name per build) and sets SMALLBOAT_SPARK_BUILDS_DIR, a
    folder under the home: every schema the build makes (the marts' and the test-failure audit
    schema) is created at <that folder>/<schema>, whatever the Spark session's warehouse directory
    is. Without the variable (a cluster, `dbt` run by hand) this is dbt-spark's own statement.
#}
{% macro spark__create_schema(relation) -%}
  {%- set builds_dir = env_var('SMALLBOAT_SPARK_BUILDS_DIR', '') -%}
  {%- call statement('create_schema') -%}
    create schema if not exists {{ relation }}
    {%- if builds_dir %} location '{{ builds_dir }}/{{ relation.schema }}'{% endif %}
  {%- endcall %}
{% endmacro %}
