"""BG/NBD model of repeat buying and customer dropout.

Fader, Hardie & Lee (2005), "Counting your customers the easy way: an
alternative to the Pareto/NBD model", Marketing Science 24(2), 275-284.

While alive, a customer buys at Poisson rate ``lambda ~ Gamma(r, alpha)``; after
each *repeat* purchase they drop out for good with probability
``p ~ Beta(a, b)``. A customer without repeat purchases is therefore always
alive (``p_alive == 1``). The inputs are the usual RFM summary: ``x`` repeat
purchases, ``t_x`` time of the last purchase and ``T`` age, both measured from
the first purchase in one time unit of the caller's choice.

>>> from online_models.bgnbd import BGNBD

The paper's estimates on CDNOW (weeks) and its worked example, a customer with
``x=2, t_x=30.43, T=38.86`` expected to make 1.226 purchases in the next 39 weeks:

>>> model = BGNBD.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426)
>>> round(model.expected_purchases(39, x=2, t_x=30.43, T=38.86), 3)
1.226
>>> round(model.p_alive(x=2, t_x=30.43, T=38.86), 3)
0.727
>>> model.p_alive(x=0, t_x=0, T=38.86)
1.0
>>> model.p_alive(x=[1, 1, 1], t_x=[5, 5, 5], T=[5, 20, 50]).round(3)
array([0.754, 0.483, 0.257])

Fitting (here on compressed rows: ``weights`` counts identical customers):

>>> model = BGNBD().fit(x=[0, 0, 1, 1, 2, 3, 5, 9], t_x=[0, 0, 30, 3, 36, 12, 38, 39],
...                     T=[40, 20, 39, 40, 38, 39, 40, 39], weights=[40, 10, 8, 6, 5, 4, 3, 2])
>>> model.n_users_
78.0
>>> model
BGNBD(r=0.2782, alpha=8.958, a=0.3361, b=1.484)
>>> round(model.p_alive(x=1, t_x=3, T=40), 3)
0.422
>>> BGNBD.from_dict(model.to_dict()).params_ == model.params_
True
"""

from __future__ import annotations

from online_models._bgnbd_common import BetaGeoBase

__all__ = ["BGNBD"]


class BGNBD(BetaGeoBase):
    """BG/NBD: dropout possible only after repeat purchases.

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters added to the mean negative log-likelihood
        (``alpha`` penalised in rescaled time where ``max(T) == 10``, as in the
        ``lifetimes`` package); 0 gives the plain maximum-likelihood estimate.

    ``p_alive = 1 / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))``.
    """

    _k = 0
