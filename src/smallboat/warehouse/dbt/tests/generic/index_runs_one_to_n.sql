{#
    The key test of a model whose grain is (group, position): in every group the index runs
    1, 2, ..., n without a gap or a repeat, so (group_column, index_column) is unique and not null.
    Each row is compared with the previous one in index order (a repeat, a gap or a group not
    starting at 1 shows there), which is cheaper than grouping by both columns on tens of millions
    of rows. Fails once per offending row.
#}
{% test index_runs_one_to_n(model, group_column, index_column) %}

with with_previous as (

    select
        {{ group_column }} as group_value,
        {{ index_column }} as index_value,
        lag({{ index_column }}) over (
            partition by {{ group_column }} order by {{ index_column }}
        ) as previous_index_value
    from {{ model }}

),

final as (

    select *
    from with_previous
    where group_value is null
        or index_value is null
        or (previous_index_value is null and index_value != 1)
        or (previous_index_value is not null and index_value != previous_index_value + 1)

)

select * from final

{% endtest %}
