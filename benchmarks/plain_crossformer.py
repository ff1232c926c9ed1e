"""Plain CrossFormer / CrossFormer++ backbone, written the way the authors write it: the speed benchmark's
reference (:mod:`benchmarks.benchmark`) when the authors' own code is not at hand.

:class:`PlainCrossFormer` computes the same function as :class:`swin_backbones.CrossFormer` (both LDA
types, ACL, per-stage group sizes and intervals, adaptive interval, the any-size extensions and the
per-forward small-map fallback) and loads its state dict by key, strictly. It is written in the style of
the authors' detection/segmentation backbone code (cheerss/CrossFormer, ``crossformer`` branch,
``models/crossformer_backbone.py``), because that is what the optimised model is benchmarked against; with
the same weights it gives that code's outputs (checked by hand at 800x1344 and 512x512 for CrossFormer-S, see
docs/user_guides/speed_memory.md, Benchmark):

* tokens travel between blocks as (B, L, C) sequences; every block reshapes them to (B, H, W, C), pads
  with F.pad, groups with reshape/permute/contiguous, attends, ungroups and crops back;
* every block builds its dynamic position bias from scratch on every forward: the offset grid and the
  relative position index with torch.arange/meshgrid, the DPB MLP, and the gathered (heads, N, N) bias;
* every block whose map needs padding builds the full (nG, N, N) padded-key mask (0, or -1e6 on keys that
  are padding) and adds it to the (B, nG, heads, N, N) logits.

Nothing is shared between blocks or cached between forwards. Inference only: no dropout, no drop path.

    plain = PlainCrossFormer.from_model(model)  # same structure, model's weights, strict load
    feats = plain(images)                       # list of NCHW maps for model.out_indices
"""
import copy
import functools
import math
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

NEG_INF = -1e6


def mask_fill_value(dtype: torch.dtype) -> float:
    # As the package: fp16 cannot hold -1e6, so use half its lowest value there.
    return max(NEG_INF, torch.finfo(dtype).min / 2)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features, act_layer=nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DynamicPosBias(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.pos_dim = dim // 4
        self.pos_proj = nn.Linear(2, self.pos_dim)
        self.pos1 = nn.Sequential(
            nn.LayerNorm(self.pos_dim),
            nn.ReLU(inplace=True),
            nn.Linear(self.pos_dim, self.pos_dim),
        )
        self.pos2 = nn.Sequential(
            nn.LayerNorm(self.pos_dim),
            nn.ReLU(inplace=True),
            nn.Linear(self.pos_dim, self.pos_dim),
        )
        self.pos3 = nn.Sequential(
            nn.LayerNorm(self.pos_dim),
            nn.ReLU(inplace=True),
            nn.Linear(self.pos_dim, self.num_heads),
        )

    def forward(self, biases):
        return self.pos3(self.pos2(self.pos1(self.pos_proj(biases))))  # (2Gh-1)*(2Gw-1), heads


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias=True, qk_scale=None):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim ** -0.5
        self.pos = DynamicPosBias(self.dim // 4, self.num_heads)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x, Gh, Gw, mask=None):
        """x: (num_groups*B, Gh*Gw, C); mask: (num_groups, Gh*Gw, Gh*Gw) or None."""
        B_, N, C = x.shape
        assert Gh * Gw == N
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).contiguous()
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)  # nG*B, heads, N, N

        # generate the mother set of offsets
        position_bias_h = torch.arange(1 - Gh, Gh, device=attn.device)
        position_bias_w = torch.arange(1 - Gw, Gw, device=attn.device)
        biases = torch.stack(torch.meshgrid([position_bias_h, position_bias_w], indexing='ij'))  # 2, 2Gh-1, 2Gw-1
        biases = biases.flatten(1).transpose(0, 1).contiguous().to(self.pos.pos_proj.weight.dtype)

        # pair-wise relative position index of the tokens inside a group
        coords_h = torch.arange(Gh, device=attn.device)
        coords_w = torch.arange(Gw, device=attn.device)
        coords = torch.stack(torch.meshgrid([coords_h, coords_w], indexing='ij'))  # 2, Gh, Gw
        coords_flatten = torch.flatten(coords, 1)  # 2, Gh*Gw
        relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]  # 2, Gh*Gw, Gh*Gw
        relative_coords = relative_coords.permute(1, 2, 0).contiguous()  # Gh*Gw, Gh*Gw, 2
        relative_coords[:, :, 0] += Gh - 1  # shift to start from 0
        relative_coords[:, :, 1] += Gw - 1
        relative_coords[:, :, 0] *= 2 * Gw - 1
        relative_position_index = relative_coords.sum(-1)  # Gh*Gw, Gh*Gw

        pos = self.pos(biases)  # (2Gh-1)*(2Gw-1), heads
        relative_position_bias = pos[relative_position_index.view(-1)].view(N, N, -1)  # N, N, heads
        relative_position_bias = relative_position_bias.permute(2, 0, 1).contiguous()  # heads, N, N
        attn = attn + relative_position_bias.unsqueeze(0).to(attn.dtype)

        if mask is not None:
            nG = mask.shape[0]
            attn = attn.view(B_ // nG, nG, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = self.softmax(attn)

        x = (attn @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj(x)


class CrossFormerBlock(nn.Module):
    def __init__(self, dim, num_heads, group_size=7, interval=8, lsda_flag=0, lda_type='paper',
                 adaptive_interval=False, mlp_ratio=4., qkv_bias=True, qk_scale=None, act_layer=nn.GELU,
                 norm_layer=nn.LayerNorm, use_acl=False):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.group_size = group_size
        self.interval = interval
        self.lsda_flag = lsda_flag  # 0: SDA, 1: LDA
        self.lda_type = lda_type
        self.adaptive_interval = adaptive_interval
        self.use_acl = use_acl

        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer)
        if use_acl:
            self.ex_conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
            self.ex_ln = norm_layer(dim)

    def forward(self, x, H, W):
        B, L, C = x.shape
        assert L == H * W, 'input feature has wrong size %d, %d, %d' % (L, H, W)

        # what this block does at this map size (decided per forward, nothing stored)
        lsda_flag, G, I = self.lsda_flag, self.group_size, self.interval
        if min(H, W) <= G:
            # small map: SDA over the whole map
            lsda_flag = 0
            if self.lda_type == 'paper':
                Gh = Gw = min(H, W)
            else:  # CrossFormer++: one H x W group, no padding
                Gh, Gw = H, W
        elif lsda_flag == 0:
            Gh = Gw = G
        elif self.lda_type == 'pp' and self.adaptive_interval:
            I = math.ceil(max(H, W) / G)
        if lsda_flag == 0:
            div_h, div_w = Gh, Gw
        elif self.lda_type == 'paper':
            div_h = div_w = I
        else:
            div_h = div_w = G * I

        shortcut = x
        x = self.norm1(x)
        x = x.view(B, H, W, C)

        # padding
        pad_l = pad_t = 0
        pad_r = (div_w - W % div_w) % div_w
        pad_b = (div_h - H % div_h) % div_h
        x = F.pad(x, (0, 0, pad_l, pad_r, pad_t, pad_b))
        _, Hp, Wp, _ = x.shape

        mask = torch.zeros((1, Hp, Wp, 1), device=x.device)
        if pad_b > 0:
            mask[:, -pad_b:, :, :] = -1
        if pad_r > 0:
            mask[:, :, -pad_r:, :] = -1

        # group embeddings and generate attn_mask
        if lsda_flag == 0:  # SDA
            x = x.reshape(B, Hp // Gh, Gh, Wp // Gw, Gw, C).permute(0, 1, 3, 2, 4, 5).contiguous()
            x = x.reshape(B * Hp * Wp // (Gh * Gw), Gh * Gw, C)
            nG = Hp * Wp // (Gh * Gw)
            mask = mask.reshape(1, Hp // Gh, Gh, Wp // Gw, Gw, 1).permute(0, 1, 3, 2, 4, 5).contiguous()
        elif self.lda_type == 'paper':  # LDA: token (h, w) to group (h mod I, w mod I)
            Gh, Gw = Hp // I, Wp // I
            x = x.reshape(B, Gh, I, Gw, I, C).permute(0, 2, 4, 1, 3, 5).contiguous()
            x = x.reshape(B * I * I, Gh * Gw, C)
            nG = I ** 2
            mask = mask.reshape(1, Gh, I, Gw, I, 1).permute(0, 2, 4, 1, 3, 5).contiguous()
        else:  # CrossFormer++ LDA: the same inside (G*I) x (G*I) regions
            Gh = Gw = G
            Rh, Rw = Hp // (G * I), Wp // (G * I)
            x = x.reshape(B, Rh, G, I, Rw, G, I, C).permute(0, 1, 4, 3, 6, 2, 5, 7).contiguous()
            x = x.reshape(B * Rh * Rw * I * I, G * G, C)
            nG = Rh * Rw * I * I
            mask = mask.reshape(1, Rh, G, I, Rw, G, I, 1).permute(0, 1, 4, 3, 6, 2, 5, 7).contiguous()
        if pad_r > 0 or pad_b > 0:
            mask = mask.reshape(nG, 1, Gh * Gw)
            attn_mask = torch.zeros((nG, Gh * Gw, Gh * Gw), device=x.device, dtype=x.dtype)
            attn_mask = attn_mask.masked_fill(mask < 0, mask_fill_value(x.dtype))
        else:
            attn_mask = None

        # multi-head self-attention
        x = self.attn(x, Gh, Gw, mask=attn_mask)  # nG*B, Gh*Gw, C

        # ungroup embeddings
        if lsda_flag == 0:
            x = x.reshape(B, Hp // Gh, Wp // Gw, Gh, Gw, C).permute(0, 1, 3, 2, 4, 5).contiguous()
        elif self.lda_type == 'paper':
            x = x.reshape(B, I, I, Gh, Gw, C).permute(0, 3, 1, 4, 2, 5).contiguous()  # B, Gh, I, Gw, I, C
        else:
            x = x.reshape(B, Rh, Rw, I, I, G, G, C).permute(0, 1, 5, 3, 2, 6, 4, 7).contiguous()
        x = x.view(B, Hp, Wp, C)

        # remove padding
        if pad_r > 0 or pad_b > 0:
            x = x[:, :H, :W, :].contiguous()
        x = x.view(B, H * W, C)

        # FFN
        x = shortcut + x
        x = x + self.mlp(self.norm2(x))

        # ACL (CrossFormer++): depthwise conv and LayerNorm, no residual
        if self.use_acl:
            x = x.view(B, H, W, C).permute(0, 3, 1, 2)
            x = self.ex_conv(x)
            x = x.permute(0, 2, 3, 1).reshape(B, H * W, C)
            x = self.ex_ln(x)
        return x


class PatchMerging(nn.Module):
    def __init__(self, dim, norm_layer=nn.LayerNorm):
        super().__init__()
        self.dim = dim
        self.norm = norm_layer(dim)
        self.reductions = nn.ModuleList([
            nn.Conv2d(dim, dim, kernel_size=2, stride=2),
            nn.Conv2d(dim, dim, kernel_size=4, stride=2, padding=1),
        ])

    def forward(self, x, H, W):
        B, L, C = x.shape
        assert L == H * W, 'input feature has wrong size'

        x = self.norm(x)
        x = x.view(B, H, W, C)
        if H % 2 or W % 2:  # any-size extension: zeros after the norm, like the convs' own padding
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = x.permute(0, 3, 1, 2)

        xs = []
        for i in range(len(self.reductions)):
            tmp_x = self.reductions[i](x).flatten(2).transpose(1, 2)
            xs.append(tmp_x)
        x = torch.cat(xs, dim=2)
        return x


class Stage(nn.Module):
    def __init__(self, dim, depth, num_heads, group_size, interval, lda_type, adaptive_interval, use_acl,
                 mlp_ratio=4., qkv_bias=True, qk_scale=None, act_layer=nn.GELU, norm_layer=nn.LayerNorm,
                 downsample=None):
        super().__init__()
        self.dim = dim
        self.depth = depth
        self.blocks = nn.ModuleList([
            CrossFormerBlock(dim=dim, num_heads=num_heads, group_size=group_size, interval=interval,
                             lsda_flag=0 if (i % 2 == 0) else 1, lda_type=lda_type,
                             adaptive_interval=adaptive_interval, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                             qk_scale=qk_scale, act_layer=act_layer, norm_layer=norm_layer,
                             use_acl=use_acl and (i + 1) % 3 == 0 and i < depth - 1)
            for i in range(depth)])
        self.downsample = downsample(dim=dim, norm_layer=norm_layer) if downsample is not None else None

    def forward(self, x, H, W):
        for blk in self.blocks:
            x = blk(x, H, W)
        B, _, C = x.shape
        feat = x.view(B, H, W, C).permute(0, 3, 1, 2).contiguous()
        if self.downsample is not None:
            x = self.downsample(x, H, W)
        return feat, x


class PatchEmbed(nn.Module):
    def __init__(self, patch_size=(4, 8, 16, 32), in_chans=3, embed_dim=96, norm_layer=nn.LayerNorm):
        super().__init__()
        self.projs = nn.ModuleList()
        for i, ps in enumerate(patch_size):
            if i == len(patch_size) - 1:
                dim = embed_dim // 2 ** i
            else:
                dim = embed_dim // 2 ** (i + 1)
            self.projs.append(nn.Conv2d(in_chans, dim, kernel_size=ps, stride=4, padding=(ps - 4) // 2))
        self.norm = norm_layer(embed_dim)

    def forward(self, x):
        _, _, H, W = x.shape
        # any-size extension: zeros to a multiple of 4
        x = F.pad(x, (0, (4 - W % 4) % 4, 0, (4 - H % 4) % 4))
        xs = []
        for i in range(len(self.projs)):
            tx = self.projs[i](x).flatten(2).transpose(1, 2)
            xs.append(tx)  # B, Ph*Pw, C
        x = torch.cat(xs, dim=2)
        x = self.norm(x)
        return x


class PlainCrossFormer(nn.Module):
    """CrossFormer / CrossFormer++ backbone in the authors' style; returns the NCHW maps of ``out_indices``."""

    def __init__(self, in_chans=3, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 group_size=(7, 7, 7, 7), crs_interval=(8, 4, 2, 1), lda_type='paper', adaptive_interval=False,
                 use_acl=False, mlp_ratio=4., qkv_bias=True, qk_scale=None, act_layer=nn.GELU,
                 norm_layer=nn.LayerNorm, out_indices=(0, 1, 2, 3)):
        super().__init__()
        self.num_layers = len(depths)
        self.out_indices = tuple(out_indices)
        self.patch_embed = PatchEmbed(in_chans=in_chans, embed_dim=embed_dim, norm_layer=norm_layer)
        self.layers = nn.ModuleList()
        for i_layer in range(self.num_layers):
            self.layers.append(Stage(
                dim=int(embed_dim * 2 ** i_layer), depth=depths[i_layer], num_heads=num_heads[i_layer],
                group_size=group_size[i_layer], interval=crs_interval[i_layer], lda_type=lda_type,
                adaptive_interval=adaptive_interval, use_acl=use_acl, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                qk_scale=qk_scale, act_layer=act_layer, norm_layer=norm_layer,
                downsample=PatchMerging if (i_layer < self.num_layers - 1) else None))

    @classmethod
    def from_model(cls, model) -> 'PlainCrossFormer':
        """Same structure as a :class:`swin_backbones.CrossFormer`, with its weights (strict load)."""
        block = model.stages[0].blocks[0]
        head_dim = model.embed_dims // model.num_heads[0]
        plain = cls(in_chans=model.in_channels, embed_dim=model.embed_dims, depths=model.depths,
                    num_heads=model.num_heads, group_size=model.group_size, crs_interval=model.crs_interval,
                    lda_type=model.lda_type, adaptive_interval=model.adaptive_interval, use_acl=model.use_acl,
                    mlp_ratio=block.mlp.fc1.out_features / model.embed_dims,
                    qkv_bias=block.attn.qkv.bias is not None,
                    qk_scale=None if block.attn.scale == head_dim ** -0.5 else block.attn.scale,
                    act_layer=functools.partial(copy.deepcopy, block.mlp.act),
                    norm_layer=functools.partial(nn.LayerNorm, eps=model.patch_embed.norm.eps),
                    out_indices=model.out_indices)
        parameter = next(model.parameters())
        plain.to(device=parameter.device, dtype=parameter.dtype)
        # The package names the authors' layers.{i} stages.{i}; nothing else differs.
        plain.load_state_dict({'layers.' + key[len('stages.'):] if key.startswith('stages.') else key: value
                               for key, value in model.state_dict().items()}, strict=True)
        return plain.train(model.training)

    def forward(self, x) -> List[torch.Tensor]:
        H, W = math.ceil(x.shape[2] / 4), math.ceil(x.shape[3] / 4)
        x = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            feat, x = layer(x, H, W)
            H, W = math.ceil(H / 2), math.ceil(W / 2)
            if i in self.out_indices:
                outs.append(feat)
        return outs
