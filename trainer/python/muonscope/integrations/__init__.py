"""One-line Muonscope integrations for the trainers people already use (docs/python.md, "Hugging Face
Trainer and Lightning"):

    from muonscope.integrations.transformers import MuonscopeCallback   # 🤗 transformers.Trainer
    trainer = Trainer(..., callbacks=[MuonscopeCallback()])

    from muonscope.integrations.lightning import MuonscopeCallback      # Lightning
    trainer = lightning.Trainer(..., callbacks=[MuonscopeCallback()])

This package imports nothing itself: ``transformers`` and ``lightning`` are optional (the ``integrations``
extra), needed only by the module that uses them, never by ``import muonscope``.
"""
