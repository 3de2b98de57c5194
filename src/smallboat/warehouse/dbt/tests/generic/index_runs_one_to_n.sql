{#
    The key test of a model whose grain is (group, position): in every group the index runs
    1, 2, ..., n without a gap or a repeat, so (group_column, index_column) is unique and not null.
    One pass grouped by the group column, cheaper than grouping by both on tens of millions of rows.
    Fails once per broken group.
#}
{% test index_runs_one_to_n(model, group_column, index_column) %}

with per_group as (

    select
        {{ group_column }},
        count(*) as n_rows,
        count({{ index_column }}) as n_indexed_rows,
        count(distinct {{ index_column }}) as n_distinct_indexes,
        min({{ index_column }}) as min_index,
        max({{ index_column }}) as max_index
    from {{ model }}
    group by {{ group_column }}

),

final as (

    select *
    from per_group
    where {{ group_column }} is null
        or n_indexed_rows != n_rows
        or n_distinct_indexes != n_rows
        or min_index != 1
        or max_index != n_rows

)

select * from final

{% endtest %}
