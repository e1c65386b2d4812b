"""The decorator of every component: a lightweight component on the project's base image, nothing pip-installed."""

from collections.abc import Callable

from kfp import dsl

from pipelines.platform_wiring import BASE_IMAGE


def on_base_image(*helpers: Callable) -> Callable:
    """`dsl.component` on the base image (which holds kfp and simplear), with these helpers embedded."""
    return dsl.component(base_image=BASE_IMAGE, install_kfp_package=False, additional_funcs=list(helpers))
