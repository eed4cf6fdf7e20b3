import os
import uuid
from collections.abc import Iterator

import pytest
import torch

# Tiny test nets gain nothing from a second thread, and two threads on two busy cores
# spin-wait each other to a crawl (5-10x slower measured here).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_network_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never open connections to dataset hosts: the preflight's download probe answers
    "unreachable" unless a test patches it itself (that patch, applied later, wins)."""
    import archbench.runner.preflight

    monkeypatch.setattr(
        archbench.runner.preflight, "unreachable", lambda url: "network probes are off in tests"
    )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The test server's URL with a fresh, empty schema as search_path; dropped afterwards.
    Skips without ARCHBENCH_TEST_POSTGRES_URL (``.ci/postgres.sh`` sets it)."""
    base_url = os.environ.get("ARCHBENCH_TEST_POSTGRES_URL")
    if not base_url:
        pytest.skip("set ARCHBENCH_TEST_POSTGRES_URL to run the PostgreSQL tests")
    import sqlalchemy as sa

    from archbench.store.storage import create_engine, resolve_storage

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(resolve_storage(base_url))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    base = sa.make_url(resolve_storage(base_url).store_url)
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
