"""V: the convolutional variational autoencoder that compresses a 64x64x3 frame to z.

Architecture as in the paper (and the authors' code): four stride-2 convolutions (kernel 4, no
padding) 32-64-128-256 channels, 64 -> 31 -> 14 -> 6 -> 2, flattened to 1024, two linear heads for
mu and logvar; the decoder maps z to 1024 features, reshapes to 1x1x1024 and upsamples with four
transposed convolutions (kernels 5, 5, 6, 6) back to 64x64x3 with a sigmoid.

Loss per sample: sum of squared pixel errors + max(KL, kl_tolerance * z_size). The KL floor ("free
bits") stops the optimiser from squeezing the KL below a budget it would only spend on blurring.
"""
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn

from .errors import check_fields


@dataclass
class VAEConfig:
    """V's shape: the latent size and the KL floor (free bits). Chapter 2."""
    z_size: int = 32  # 32 for CarRacing, 64 for Doom
    kl_tolerance: float = 0.5  # KL floor = kl_tolerance * z_size nats per sample

    def __post_init__(self):
        check_fields(self, positive=("z_size",), non_negative=("kl_tolerance",))


class VAEOutput(NamedTuple):
    """What V returns for a batch: the reconstruction, mu, logvar and the sampled z. Chapter 2."""
    recon: torch.Tensor  # (B, 3, 64, 64) in [0, 1]
    mu: torch.Tensor  # (B, z)
    logvar: torch.Tensor  # (B, z)
    z: torch.Tensor  # (B, z)


class VAELoss(NamedTuple):
    loss: torch.Tensor  # scalar: recon + floored KL, averaged over the batch
    recon: torch.Tensor  # scalar: sum of squared errors per sample, batch mean
    kl: torch.Tensor  # scalar: KL(q(z|x) || N(0, I)) per sample, batch mean (before the floor)


class ConvVAE(nn.Module):
    """V: the convolutional VAE that compresses a 64x64x3 frame to z and draws it back.

    Introduced in chapter 1.
    """
    def __init__(self, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.config = config
        z = config.z_size
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),  # 64 -> 31
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),  # 31 -> 14
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),  # 14 -> 6
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),  # 6 -> 2
            nn.Flatten(),  # 256 * 2 * 2 = 1024
        )
        self.fc_mu = nn.Linear(1024, z)
        self.fc_logvar = nn.Linear(1024, z)
        self.fc_decode = nn.Linear(z, 1024)  # no activation, as in the paper
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),  # 1 -> 5
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),  # 5 -> 13
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),  # 13 -> 30
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),  # 30 -> 64
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 3, 64, 64) floats in [0, 1] -> mu, logvar: (B, z)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, 64, 64):
            raise ValueError(f"ConvVAE.encode expects frames of shape (B, 3, 64, 64), got {tuple(x.shape)}; "
                             "convert uint8 (B, 64, 64, 3) frames with wmlib.vae.frames_to_tensor first")
        if not x.is_floating_point():
            raise ValueError(f"ConvVAE.encode expects float frames in [0, 1], got {x.dtype}; convert uint8 "
                             "(B, 64, 64, 3) frames with wmlib.vae.frames_to_tensor first")
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, z) -> frames (B, 3, 64, 64) in [0, 1]."""
        if z.shape[-1] != self.config.z_size or not z.is_floating_point():
            raise ValueError(f"ConvVAE.decode expects float latents of shape (B, {self.config.z_size}), got "
                             f"{z.dtype} {tuple(z.shape)}; pass z from this V's encode (its z_size is "
                             f"{self.config.z_size})")
        return self.decoder(self.fc_decode(z).view(-1, 1024, 1, 1))

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor, generator=None) -> torch.Tensor:
        """The reparameterisation trick: z = mu + sigma * eps, differentiable in mu and logvar.

        generator: None, one torch.Generator for the whole batch, or a list of one per row (an agent's
        episodes each draw their own noise, so an episode plays the same alone or beside others).
        """
        if isinstance(generator, (list, tuple)):
            eps = torch.stack([torch.randn(mu.shape[1:], generator=g, device=mu.device, dtype=mu.dtype)
                               for g in generator])
        else:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.sample(mu, logvar, generator)
        return VAEOutput(self.decode(z), mu, logvar, z)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims: (B, z) -> (B,). Chapter 2."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def vae_loss(x: torch.Tensor, out: VAEOutput, config: VAEConfig) -> VAELoss:
    """V's loss per sample: summed squared pixel error + the KL floored at kl_tolerance * z_size. Chapter 2."""
    recon = (out.recon - x).pow(2).sum(dim=(1, 2, 3))  # (B,) squared error summed over pixels
    kl = kl_divergence(out.mu, out.logvar)  # (B,)
    kl_floored = torch.clamp(kl, min=config.kl_tolerance * config.z_size)
    return VAELoss((recon + kl_floored).mean(), recon.mean(), kl.mean())


def frames_to_tensor(frames, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 frames (B, 64, 64, 3) (numpy or torch) -> float (B, 3, 64, 64) in [0, 1] on `device`. Chapter 1."""
    if hasattr(frames, "flags") and not frames.flags.writeable:
        frames = frames.copy()  # torch wants writable memory; memory maps and cached frames are not
    t = torch.as_tensor(frames)
    if t.dtype != torch.uint8 or t.dim() != 4 or tuple(t.shape[1:]) != (64, 64, 3):
        raise ValueError(f"expected uint8 frames of shape (B, 64, 64, 3), got {t.dtype} {tuple(t.shape)}")
    return t.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_frames(x: torch.Tensor):
    """float (B, 3, 64, 64) in [0, 1] -> uint8 numpy (B, 64, 64, 3), for display and video."""
    return (x.detach().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
