"""The command-line faces: ``manifold-ae <command>`` dispatches to ``main(argv) -> int`` of a module here
(train, evaluate, predict, compare, demo). They drive the image application (``manifold_ae.images``) and the
claim runner; nothing below them imports a command.
"""
