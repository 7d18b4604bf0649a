import inspect

import itslive_dask


def test_every_public_name_resolves_and_is_documented():
    for name in itslive_dask.__all__:
        obj = getattr(itslive_dask, name)
        if name == "__version__":
            continue
        assert inspect.getdoc(obj), f"{name} has no docstring"


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError):
        itslive_dask.no_such_thing  # noqa: B018
