"""Images: convolutional architectures (DCGAN generator and discriminator, the convolutional
encoder and decoder of VAE-style models), local image data (MNIST: IDX files or mnist.pkl.gz;
Stacked MNIST built from them; image folders) and Stacked MNIST's mode count."""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from . import data, mnist, nets, stacked


@hookimpl
def unigen_register_networks(register: Any) -> None:
    register("dcgan_generator", nets.UpArch())
    register("dcgan_discriminator", nets.DownArch())
    register("conv_decoder", nets.DecoderArch())
    register("conv_encoder", nets.EncoderArch())


@hookimpl
def unigen_register_datasets(register: Any) -> None:
    register("mnist", mnist.MNIST())
    register("stacked_mnist", stacked.StackedMNIST())
    register("image_folder", data.ImageFolder())


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("stacked_modes", stacked.StackedModes())
