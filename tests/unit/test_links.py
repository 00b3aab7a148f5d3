"""Value links (one column fixed by another in every real row) are found at ingest and hold in
every generated row, where a model alone breaks them."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline import generate, ingest, train
from pipeline.artifacts import StagePaths
from pipeline.links import apply_links, find_links
from pipeline.models.saved import load_model
from pipeline.sampling import sample_frame
from pipeline.schema import describe, infer_kind
from tests.conftest import tiny_config

CONTINENT = {f"c{i:02d}": ["Africa", "Asia", "Europe"][i % 3] for i in range(24)}


def _linked_frame(n: int = 480, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    country = rng.choice(sorted(CONTINENT), n)
    return pd.DataFrame({
        "country": country,
        "continent": [CONTINENT[c] for c in country],
        "code": [int(c[1:]) + 100 for c in country],         # the same as country: one of the two is kept
        "size": rng.integers(1, 7, n),
        "spend": rng.gamma(2.0, 10.0, n),
        "serial": rng.permutation(n) % (n // 3),              # near-unique: determines nothing by chance
        "flag": rng.random(n) < 0.5,
    })


def _columns(df):
    return [describe(df[c], infer_kind(df[c])) for c in df.columns]


def test_links_are_found_once_each_from_the_root_and_not_by_chance():
    df = _linked_frame()
    links = {(k["from"], k["to"]): dict(map(tuple, k["pairs"])) for k in find_links(df, _columns(df))}
    assert set(links) == {("country", "continent"), ("country", "code")}
    assert links[("country", "continent")] == CONTINENT
    broken = df.copy()
    broken.loc[0, "continent"] = "Oceania" if broken.loc[0, "continent"] != "Oceania" else "Asia"
    assert ("country", "continent") not in {(k["from"], k["to"]) for k in find_links(broken, _columns(broken))}


def test_apply_links_sets_the_determined_column_in_its_dtype_and_leaves_unseen_values():
    df = _linked_frame()
    links = find_links(df, _columns(df))
    syn = df.iloc[:60].copy()
    syn["continent"] = "Nowhere"
    syn["code"] = np.int64(0)
    syn.loc[0, "country"] = "never-seen"
    out = apply_links(syn, links, {c: str(df[c].dtype) for c in df.columns})
    assert out.loc[0, "continent"] == "Nowhere" and out.loc[0, "code"] == 0  # nothing to go by: the model's
    rest = out.iloc[1:]
    assert (rest["continent"] == rest["country"].map(CONTINENT)).all() and out["code"].dtype == df["code"].dtype
    assert (rest["code"] == rest["country"].str[1:].astype(int) + 100).all()


@pytest.mark.slow  # about a second each: the fast tier stays under a minute
@pytest.mark.parametrize("keep", [True, False])
def test_every_generated_row_keeps_the_links_found_at_ingest(tmp_path, keep):
    source = tmp_path / "linked.parquet"
    _linked_frame().to_parquet(source, index=False)
    cfg = tiny_config(tmp_path, source, target=None, **{"datasets.tiny.keep_links": keep, "generate.rows": 600})
    for stage in (ingest, train, generate):
        stage.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    recorded = json.loads(paths.schema.read_text()).get("links", [])
    assert len(recorded) == (2 if keep else 0)
    syn = pd.read_parquet(paths.synthetic)
    kept = (syn["continent"] == syn["country"].map(CONTINENT)).mean()
    if keep:
        assert kept == 1.0 and (syn["code"] == syn["country"].str[1:].astype(int) + 100).all()
        # Conditions and the Python API go through the same sampler.
        loaded = load_model(paths.model)
        rows = sample_frame(loaded, 200, 3, conditions={"continent": "Asia"})
        assert (rows["continent"] == "Asia").all() and (rows["country"].map(CONTINENT) == "Asia").all()
    else:
        assert kept < 1.0  # two epochs of a GAN do not learn 24 countries' continents
