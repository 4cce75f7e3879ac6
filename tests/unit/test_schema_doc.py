"""docs/schema.md is what `python -m tools.schema_doc` writes from the models today."""

from tools.schema_doc import COMMAND, DOC, render


def test_schema_doc_is_current() -> None:
    want = render()
    have = DOC.read_text() if DOC.exists() else ""
    assert have == want, f"docs/schema.md is stale: run `.venv/bin/{COMMAND}` and commit it"


def test_schema_doc_has_a_section_per_asset_with_every_column() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pipelines.definitions import ASSETS

    text = render()
    for assets_def in ASSETS:
        for spec in assets_def.specs:
            assert f"\n## {spec.key.to_user_string()}\n" in text
            for column in spec.metadata["dagster/column_schema"].columns:
                assert f"| `{column.name.partition('.')[2] or column.name}` |" in text
