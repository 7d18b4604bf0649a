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


def test_search_is_the_function_even_after_the_submodule_is_imported():
    import importlib

    importlib.import_module("itslive_dask.discovery.api")
    importlib.import_module("itslive_dask.store.write")
    from itslive_dask import search

    assert callable(search) and search.__name__ == "search"
    assert itslive_dask.search is search
