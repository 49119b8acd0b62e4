"""Run control in the training loops people use: thin shells over :class:`LoopBudget`.

Every integration feeds an :class:`~grokwatch.Agent` (built with a
:class:`~grokwatch.RunPolicy`: advice is opt-in) and follows its decisions through the
framework-free :class:`LoopBudget`, which applies each stop or extension exactly once:

==========================================  ==================================================
module                                      what it does with the advice
==========================================  ==================================================
:mod:`grokwatch.integrations.loop`          plain PyTorch loop: ``for step in budget`` grows
                                            when the run is extended, ends when it is stopped
:mod:`grokwatch.integrations.lightning`     ``Callback``: ``trainer.should_stop``, grows
                                            ``max_steps`` (or ``max_epochs``)
:mod:`grokwatch.integrations.huggingface`   ``TrainerCallback``: ``control.should_training_
                                            stop``, grows ``state.max_steps``
:mod:`grokwatch.integrations.optuna`        pruner: prunes hopeless trials, never one
                                            forecast to grok, may wrap another pruner
:mod:`grokwatch.integrations.ray`           Tune ``Stopper``: stops hopeless and finished
                                            trials, keeps the (extendable) step budget
==========================================  ==================================================

The framework modules import their framework; this package and :mod:`.loop` do not.
"""

from grokwatch.integrations.loop import LoopBudget

__all__ = ["LoopBudget"]
