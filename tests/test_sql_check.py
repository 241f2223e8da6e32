"""The held-out answers' SQL runs on the prompt's database (``evaluation.sql_check``)."""

from __future__ import annotations

from asls_mlx.evaluation.code_check import CODE_ISSUE
from asls_mlx.evaluation.metrics import score_heldout
from asls_mlx.evaluation.personas import get_persona
from asls_mlx.evaluation.sql_check import answer_statements, sql_passes, sql_tests_by_prompt

# Right answers as people write them, other than the bundled reference (dialects, joins instead of subqueries) ...
RIGHT = {
    "coding-04": "Use `SELECT COUNT(*) AS total FROM users;` to count them.",
    "coding-19": ("```sql\nSELECT customer_id, SUM(total) AS spent\nFROM orders\nWHERE YEAR(created_at) = 2023\n"
                  "GROUP BY customer_id\nORDER BY spent DESC;\n```"),
    "coding-34": ("```sql\nSELECT p.*\nFROM products p\nLEFT JOIN order_items oi ON oi.product_id = p.id\n"
                  "WHERE oi.product_id IS NULL;\n```"),
    "coding-70": "SELECT EXTRACT(MONTH FROM created_at) AS month, COUNT(*) FROM orders GROUP BY 1;",
    "coding-88": ("```sql\nDELETE FROM emails\nWHERE id IN (SELECT e1.id FROM emails e1 JOIN emails e2\n"
                  "  ON e1.address = e2.address AND e1.id > e2.id);\n```"),
    "coding-100": ("```sql\nSELECT s.name, GROUP_CONCAT(e.course_name, ', ') AS courses\nFROM students s\n"
                   "JOIN enrollments e ON e.student_id = s.id\nGROUP BY s.name;\n```"),
}
# ... and near misses: the year filter or the order left out, a grouping per day, the wrong duplicate kept.
WRONG = {
    "coding-04": "```sql\nSELECT * FROM users WHERE username = 'JohnDoe';\n```",  # the embedded model's own answer
    "coding-19": "SELECT customer_id, SUM(total) AS s FROM orders GROUP BY customer_id ORDER BY s DESC;",
    "coding-34": "SELECT name FROM products;",
    "coding-70": "SELECT created_at, COUNT(*) FROM orders GROUP BY created_at;",
    "coding-88": "DELETE FROM emails WHERE id NOT IN (SELECT MAX(id) FROM emails GROUP BY address);",
    "coding-100": "SELECT * FROM students, enrollments;",
}
UNORDERED_19 = ("SELECT customer_id, SUM(total) AS s FROM orders WHERE strftime('%Y', created_at) = '2023' "
                "GROUP BY customer_id ORDER BY s;")


def _prompt(test_id: str) -> str:
    return next(p for p, t in sql_tests_by_prompt().items() if t["id"] == test_id)


def test_every_bundled_sql_test_accepts_its_reference_and_a_right_answer_and_rejects_a_near_miss():
    assert set(t["id"] for t in sql_tests_by_prompt().values()) == set(RIGHT) == set(WRONG)
    for test_id, test in ((t["id"], t) for t in sql_tests_by_prompt().values()):
        prompt = _prompt(test_id)
        assert sql_passes(prompt, f"```sql\n{test['reference']};\n```") is True, test_id
        assert sql_passes(prompt, RIGHT[test_id]) is True, test_id
        assert sql_passes(prompt, WRONG[test_id]) is False, test_id
    assert sql_passes(_prompt("coding-19"), UNORDERED_19) is False  # "highest first" is part of the task


def test_an_answer_without_a_query_is_wrong_and_one_the_budget_cut_inside_its_query_is_not_judged():
    count = _prompt("coding-04")
    assert sql_passes(count, "The users table has many rows, and you can count them with a query.") is False
    cut = ("Counting rows is one of the first things people do with a table, and every database engine can do it. "
           "The query asks the database for an aggregate over the whole table instead of returning each row, which is "
           "much faster than reading every row yourself:\n```sql\nSELECT COUNT(")
    assert answer_statements(cut) == [("SELECT COUNT(", True)]
    assert sql_passes(count, cut) is None
    assert sql_passes("Write a SQL query that finds the oldest user.", "SELECT 1;") is None  # no test: not judged
    own_table = ("```sql\nCREATE TABLE users (\n  id INT PRIMARY KEY AUTO_INCREMENT,\n  name VARCHAR(50)\n);\n```\n\n"
                 + "This query creates a table called users with an id and a name column, " * 4)
    assert sql_passes(count, own_table) is False  # the embedded model's answer to two of the prompts, cut after it


def test_the_database_attaches_no_file_and_stops_a_runaway_query(tmp_path):
    count = _prompt("coding-04")
    target = tmp_path / "x.db"
    assert sql_passes(count, f"```sql\nATTACH DATABASE '{target}' AS x;\nSELECT COUNT(*) FROM users;\n```") is True
    assert not target.exists()  # only SELECT / WITH / DELETE statements run, and ATTACH is denied anyway
    loop = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c;"
    assert sql_passes(count, loop) is False


def test_a_wrong_query_scores_zero_as_wrong_code_in_the_held_out_metrics():
    count = _prompt("coding-04")
    persona = get_persona("concise")
    score = score_heldout(persona, [count, count], [WRONG["coding-04"], RIGHT["coding-04"]])
    assert score.issues == {CODE_ISSUE: 1}
    assert score.per_prompt == [0.0, 1.0]
