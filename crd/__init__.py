"""Contrastive (CRD, instance discrimination), information-theoretic (ITRD, KD) and feature-regression (DISTILLn) losses."""
from crd.embed import Embed, l2_normalize
from crd.itrd import ITRDLoss, itrd_correlation_loss, itrd_mutual_loss, kd_loss
from crd.loss import CRDLoss, InstanceDiscrimination, nce_loss
from crd.memory import ContrastMemory
from crd.regression import CatRegression

__all__ = [
    "Embed", "l2_normalize", "ContrastMemory", "CRDLoss", "InstanceDiscrimination", "nce_loss",
    "ITRDLoss", "itrd_correlation_loss", "itrd_mutual_loss", "kd_loss", "CatRegression",
]
