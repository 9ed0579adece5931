"""The fast engine (`python -m lightning_impl.train --engine fast`): the plain port's model, trained faster.

    network.py      FusedStreetcarNet: StreetcarNet's modules and state_dict, computed by one fused kernel
    fused.py        the fused forward and its hand-written backward, and the fused storage behind the modules
    closed_form.py  the loss's and the output activation's gradients written out (bitwise autograd's)
    system.py       FastStreetcarClassifier: manual optimisation, closed-form steps, steps per execution, DDP

Both engines read and write the same checkpoints; lightning_impl/tests/test_engines.py
holds them to each other (outputs, gradients, histories).
"""
