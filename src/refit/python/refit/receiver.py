"""The inference side of a refit, shaped like vLLM's weight-transfer engine
(init_weight_transfer_engine, start_weight_update, update_weights,
finish_weight_update, weight_version; users_and_engines.md §1): an
inference worker takes part in a non-collocated refit without knowing the
trainer's code, and publishes a weight version only after a complete one."""

from ._swap import _group_of, swap_model_weights


class WeightReceiver:
    """Receives refits into ``model`` (this worker's ShardedModel: its
    layout, its rank within that layout, and the engine's tensors, written in
    place). ``transform`` is the format the engine holds ("fp8-block", ...)
    or None."""

    def __init__(self, model, transform=None):
        self.model = model
        self.transform = transform
        self._config = None
        self._updating = False
        self._pending = None
        self._published = 0
        self.last_report = None
        self.partial_tensors = []

    def init_weight_transfer_engine(self, refit_method="mpi", group=None,
                                    src_rank_offset=0, dst_rank_offset=0,
                                    verify="auto", dst_digests=False,
                                    atomic=False):
        """Where the weights come from: the refit method, the group shared
        with the trainer (an mpi4py communicator, default COMM_WORLD) and the
        rank offsets of the trainer's and this engine's layouts in it. No
        communication happens here.

        ``verify`` ("auto", "checksum" or "none") and ``atomic`` as in
        swap_model_weights; the trainer must pass the same values (every
        rank agrees on them, or the refit fails on every rank).
        ``dst_digests``: each SwapReport carries the XXH3-64 of every tensor
        this engine received, to compare with the engine's own hash."""
        if refit_method == "local":
            raise ValueError('WeightReceiver: refit_method "local" has no '
                             "separate engine process; use swap_model_weights")
        self._config = dict(refit_method=refit_method, group=group,
                            src_rank_offset=src_rank_offset,
                            dst_rank_offset=dst_rank_offset, verify=verify,
                            dst_digests=dst_digests, atomic=atomic)

    def start_weight_update(self):
        """The engine stops serving from the weights until
        finish_weight_update (is_updating is True)."""
        if self._config is None:
            raise RuntimeError("init_weight_transfer_engine() was not called")
        if self._updating:
            raise RuntimeError("a weight update is already in progress")
        self._updating = True
        self._pending = None

    def update_weights(self):
        """Receives one refit into the model's tensors (collective with the
        trainer's swap_model_weights). Returns this rank's SwapReport. On an
        error the published version does not change, the error propagates
        and ``partial_tensors`` names the engine tensors the failed refit may
        have written in part (empty when no byte moved, or with atomic)."""
        if not self._updating:
            raise RuntimeError("start_weight_update() was not called")
        self.partial_tensors = []
        try:
            report = swap_model_weights(None, self.model,
                                        transform=self.transform,
                                        **self._config)
        except Exception:
            group = _group_of(self._config["refit_method"], self._config["group"])
            self.partial_tensors = list(group.partial_tensors)
            raise
        self.last_report = report
        self._pending = report.weight_version
        return report

    def finish_weight_update(self):
        """Publishes the version of the last complete refit and ends the
        update. Returns the published weight version."""
        if not self._updating:
            raise RuntimeError("start_weight_update() was not called")
        if self._pending is not None:
            self._published = self._pending
        self._updating = False
        return self._published

    @property
    def is_updating(self):
        return self._updating

    @property
    def weight_version(self):
        """The version of the weights the engine may serve: the group's
        weight version after the last refit that completed on every rank
        (0 before the first)."""
        return self._published
