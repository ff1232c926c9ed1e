"""Kernel of the row gathers that move tokens between a stage's storage and its windows: a gather whose
backward is a gather too, where autograd's would be a scatter-add."""
import torch


def gather_rows_forward(source: torch.Tensor, index: torch.Tensor, zero_rows) -> torch.Tensor:
    out = source.index_select(0, index)
    return out if zero_rows is None else out.masked_fill_(zero_rows.reshape(-1, 1), 0)


class InvertibleRowGather(torch.autograd.Function):
    """Rows of a 2-d tensor picked by an index, with rows zeroed where a mask says, when the index's
    inverse on the kept rows is known: the gradient is then the inverse gather."""

    @staticmethod
    def forward(ctx, source, index, inverse, zero_rows, inverse_zero_rows):
        ctx.save_for_backward(inverse, inverse_zero_rows)
        return gather_rows_forward(source, index, zero_rows)

    @staticmethod
    def backward(ctx, grad):
        inverse, inverse_zero_rows = ctx.saved_tensors
        return gather_rows_forward(grad, inverse, inverse_zero_rows), None, None, None, None
