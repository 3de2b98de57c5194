{#
    A distribution check: one aggregate `metric` over the model must lie in [min_value, max_value].
    Fails with one row (the measured value, its bounds and the row count) when it does not.

    The check is skipped while the model has fewer than `min_rows` rows: a handful of sessions says
    nothing about a distribution. `where` (the standard test config) narrows the measured rows.
    Either bound may be omitted. Bounds usually come from dbt vars, so a team tunes them per shop.
#}
{% test metric_between(model, metric, min_value=none, max_value=none, min_rows=0, column_name=none) %}

with measured as (

    select
        {{ metric }} as metric_value,
        count(*) as n_rows
    from {{ model }}

),

final as (

    select
        metric_value,
        {{ min_value if min_value is not none else 'cast(null as ' ~ dbt.type_float() ~ ')' }} as min_value,
        {{ max_value if max_value is not none else 'cast(null as ' ~ dbt.type_float() ~ ')' }} as max_value,
        n_rows
    from measured
    where n_rows >= {{ min_rows }}
      and (
        metric_value is null
        {% if min_value is not none %} or metric_value < {{ min_value }} {% endif %}
        {% if max_value is not none %} or metric_value > {{ max_value }} {% endif %}
      )

)

select * from final

{% endtest %}
