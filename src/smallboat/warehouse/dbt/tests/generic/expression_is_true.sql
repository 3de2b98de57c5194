{#
    Fails on every row where `expression` is false (a NULL result passes, as in dbt_utils).
    Used for row-level invariants that no built-in test states.
#}
{% test expression_is_true(model, expression, column_name=none) %}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
