"""Styles as data: built-in looks, YAML round trip, one clear error naming the key and the file."""
from __future__ import annotations

import pickle

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from makeup.errors import TinyBeautyError
from makeup.styles import BUILTIN_STYLES, PRODUCTS, Style, list_styles, load_style, style_from_dict


def random_style_dicts() -> st.SearchStrategy[dict]:
    """Any valid style mapping: a non-empty subset of products, each field in range."""
    color = st.tuples(*[st.integers(0, 255)] * 3).map(list)

    def product(kind: str):
        fields = {k: (color if kind_ == "color" else st.floats(lo, hi, allow_nan=False))
                  for k, (kind_, lo, hi, _) in PRODUCTS[kind].items()}
        return st.fixed_dictionaries(fields)

    kinds = st.sets(st.sampled_from(list(PRODUCTS)), min_size=1)
    return kinds.flatmap(lambda ks: st.fixed_dictionaries(
        {"name": st.just("random"), "description": st.text(max_size=20), **{k: product(k) for k in ks}}))


def test_builtins_load_and_are_distinct():
    assert set(BUILTIN_STYLES) <= set(list_styles())
    styles = [load_style(n) for n in BUILTIN_STYLES]
    for name, s in zip(BUILTIN_STYLES, styles):
        assert s.name == name and s.description and s.products
    assert len({s.to_yaml() for s in styles}) == len(styles)
    assert load_style("red_lip").lipstick.color[0] > 150  # red really is red
    assert load_style("smokey_eyes").eyeshadow.lower > 0.3
    assert "blush" not in load_style("red_lip").products


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=random_style_dicts())
def test_yaml_round_trip(tmp_path, data):
    style = style_from_dict(data)
    path = tmp_path / "look.yaml"
    style.save(path)
    again = load_style(path)
    assert again == style and hash(again) == hash(style)
    assert load_style(again) is again
    assert pickle.loads(pickle.dumps(style)) == style  # travels to data-loader workers


def _write(tmp_path, text: str):
    p = tmp_path / "my_look.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, key", [
    ("lipstick: {color: '#ff0000', shine: 0.3}", "lipstick.shine"),
    ("lipstik: {color: '#ff0000'}", "lipstik"),
    ("lipstick: {color: '#ff0000', opacity: 1.5}", "lipstick.opacity"),
    ("eyeliner: {thickness: -0.1}", "eyeliner.thickness"),
    ("eyeshadow: {color: '#zz0000'}", "eyeshadow.color"),
    ("blush: {color: [300, 0, 0]}", "blush.color"),
    ("foundation: {coverage: 0.2}", "foundation.tone"),
    ("lipstick: {color: '#ff0000', gloss: yes}", "lipstick.gloss"),
    ("brow_tint: {color: '#333333', opacity: .nan}", "brow_tint.opacity"),
])
def test_bad_key_or_value_names_key_and_file(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(TinyBeautyError) as err:
        load_style(path)
    msg = str(err.value)
    assert key in msg and str(path) in msg and "\n" not in msg


@pytest.mark.parametrize("text", ["- a\n- b\n", "name: x\n", "lipstick: [1, 2]\n", "a: [unclosed\n"])
def test_malformed_files_are_one_line_errors(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(TinyBeautyError) as err:
        load_style(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_unknown_names_and_missing_files(tmp_path):
    with pytest.raises(TinyBeautyError, match="unknown style 'gothic'.*natural"):
        load_style("gothic")
    with pytest.raises(TinyBeautyError, match="no such style file"):
        load_style(tmp_path / "missing.yaml")


def test_defaults_fill_optional_fields_and_name_comes_from_file(tmp_path):
    path = _write(tmp_path, "lipstick: {color: [200, 20, 40]}\n")
    s = load_style(path)
    assert s.name == "my_look" and s.lipstick.opacity == PRODUCTS["lipstick"]["opacity"][3]
    assert s.eyeliner is None and isinstance(s, Style)
    assert yaml.safe_load(s.to_yaml())["lipstick"]["color"] == "#c81428"
