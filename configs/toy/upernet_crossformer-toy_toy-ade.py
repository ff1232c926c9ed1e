# UperNet with a slim CrossFormer on the toy ADE20K-layout set: as upernet_swin-toy_toy-ade.py with
# a 4-stage CrossFormer (32..256 channels, group size 7, LDA intervals 8, 4, 2, 1) as the backbone.
# No weight decay on norms (norm1/norm2/patch_embed.norm/downsample.norm, and ex_ln for CrossFormer++)
# nor on the dynamic position bias (attn.pos), CrossFormer's counterpart of Swin's bias tables.
_base_ = './upernet_swin-toy_toy-ade.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='swin_backbones.CrossFormer',
        embed_dims=32,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8),
        group_size=7,
        crs_interval=(8, 4, 2, 1),
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1),
    decode_head=dict(in_channels=[32, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128))
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'norm': dict(decay_mult=0.),
            'ex_ln': dict(decay_mult=0.),
            'attn.pos': dict(decay_mult=0.)
        }))
