"""DDA teacher: conditional residual diffusion (RDM + FGMM + eyeliner loss) behind a backend registry.

``teacher.train.train_teacher`` fits a backend on seed pairs, ``teacher.inference.load_teacher`` loads one,
``teacher.amplify.amplify`` writes amplified pair datasets, ``teacher.fidelity.teacher_fidelity`` scores a
teacher against the renderer. Imports only ``makeup`` (never ``student``).
"""
