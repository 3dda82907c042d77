"""The pure domain of hpsteer: no I/O, no google.*, no httpx, no os.

Devices and comfort (:mod:`.devices`), the market time grid (:mod:`.market`), prices
(:mod:`.prices`), weather (:mod:`.weather`), telemetry (:mod:`.telemetry`), plans (:mod:`.plans`),
commands and their lifecycle (:mod:`.commands`), generic actions (:mod:`.actions`) and the
messages on the topics (:mod:`.messages`).
"""
