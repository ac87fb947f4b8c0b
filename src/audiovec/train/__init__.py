"""Training for audiovec models: contrastive loss, GradCache, trainer, recipes.

A separate package in spirit (like ``open_clip_train``): the library never imports it, and it
only uses the library's public API. Importing this package stays cheap; modules load torch lazily.
"""
