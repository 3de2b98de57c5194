{#
    Fails once per combination of `combination_of_columns` that occurs more than once: the key test
    of a model whose grain is several columns (one row per session and event index, say).
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with counted as (

    select
        {{ combination_of_columns | join(', ') }},
        count(*) as n_records
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}

),

final as (

    select *
    from counted
    where n_records > 1

)

select * from final

{% endtest %}
