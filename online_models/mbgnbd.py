"""MBG/NBD: BG/NBD where a customer may also drop out right after the first purchase.

Batislam, Denizel & Filiztekin (2007), "Empirical validation and comparison of
models for customer base analysis", IJRM 24(3), 201-209; Hoppe & Wagner (2007),
"Customer base analysis: the case for a central variant of the
Betageometric/NBD model", Marketing - JRM 29(2), 75-90 (erratum IJRM 2008).
Same model as ``lifetimes.ModifiedBetaGeoFitter`` and BTYDplus ``mbgnbd``.

Purchases follow a Poisson process with rate ``lambda ~ Gamma(r, alpha)``; at
the first purchase and after each repeat purchase the customer drops out with
probability ``p ~ Beta(a, b)``. Unlike BG/NBD, customers without repeat
purchases are not assumed alive: their ``p_alive`` falls as they age. Inputs
are ``x`` repeat purchases, recency ``t_x`` and age ``T`` in one time unit.

>>> from online_models.mbgnbd import MBGNBD

Maximum-likelihood estimates on CDNOW (weeks), as reported by BTYDplus and the
``lifetimes`` test-suite:

>>> model = MBGNBD.from_params(r=0.525, alpha=6.183, a=0.891, b=1.614)
>>> round(model.p_alive(x=0, t_x=0, T=38.86), 3)
0.39
>>> round(model.p_alive(x=2, t_x=30.43, T=38.86), 3)
0.706
>>> round(model.expected_purchases(39, x=2, t_x=30.43, T=38.86), 3)
1.263
>>> round(model.expected_purchases_new(39), 3)
1.183

Fitting (``weights`` counts identical customers):

>>> model = MBGNBD().fit(x=[0, 0, 1, 1, 2, 3, 5, 9], t_x=[0, 0, 30, 3, 36, 12, 38, 39],
...                      T=[40, 20, 39, 40, 38, 39, 40, 39], weights=[40, 10, 8, 6, 5, 4, 3, 2])
>>> model.n_users_
78.0
>>> model
MBGNBD(r=0.4722, alpha=11.01, a=0.4543, b=1.181)
>>> [round(model.p_alive(x=0, t_x=0, T=T), 3) for T in (20, 40)]
[0.615, 0.558]
>>> MBGNBD.from_dict(model.to_dict()).params_ == model.params_
True
"""

from __future__ import annotations

from online_models._bgnbd_common import BetaGeoBase

__all__ = ["MBGNBD"]


class MBGNBD(BetaGeoBase):
    """MBG/NBD: dropout possible at the first purchase too.

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters added to the mean negative log-likelihood
        (``alpha`` penalised in rescaled time where ``max(T) == 10``, as in the
        ``lifetimes`` package); 0 gives the plain maximum-likelihood estimate.

    ``p_alive = 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x))``.
    """

    _k = 1
