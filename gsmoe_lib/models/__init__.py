"""The networks of GS-MoE: the UR-DMU task encoder (`urdmu`), the class experts (`experts`), the gate (`gate`).

Import from the submodules, e.g. `from gsmoe_lib.models.urdmu import URDMU`.
"""
