"""The OpenMMLab model index (model-index.yml, configs/*/metafile.yml): every config has an entry and every entry a
config, the published numbers next to the counted ones, the README's model zoo table made from it, and (slow) the
counted parameters and FLOPs equal to swin-backbones-flops' and within 5% of the published FLOPs."""
import glob
import os.path as osp
import re

import pytest

from swin_backbones.flops import DETECTION_SHAPE, SEGMENTATION_SHAPE
from swin_backbones.model_index import count_model, input_size, load_model_index, zoo_table

from .toy_helpers import REPO

INDEX = osp.join(REPO, 'model-index.yml')
MODELS = load_model_index(INDEX)['Models']


def _config_names():
    paths = glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    return sorted(osp.relpath(p, REPO) for p in paths
                  if not osp.relpath(p, osp.join(REPO, 'configs')).startswith(('_base_', 'toy')))


def test_every_config_has_an_entry_and_every_entry_a_config():
    assert sorted(model['Config'] for model in MODELS) == _config_names()
    for model in MODELS:
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
        assert model['_metafile'] == osp.join(REPO, osp.dirname(model['Config']), 'metafile.yml')
    metafiles = sorted(osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml')))
    assert sorted({osp.relpath(model['_metafile'], REPO) for model in MODELS}) == metafiles


def test_the_index_passes_modelindex_checks():
    from modelindex.load_model_index import load  # openmim's dependency, installed with the test extra
    index = load(INDEX)
    assert index.check(silent=True) == []
    collections = {collection.name: collection for collection in index.collections}
    for model in index.models:
        collection = collections[model.in_collection]
        assert collection.paper['URL'].startswith('https://arxiv.org/abs/') and collection.code['URL']


@pytest.mark.parametrize('model', MODELS, ids=lambda model: model['Name'])
def test_entry(model):
    metadata = model['Metadata']
    detection = metadata['Training Data'] == 'COCO'
    assert input_size(model) == (DETECTION_SHAPE if detection else SEGMENTATION_SHAPE)
    assert ('Epochs' if detection else 'Iterations') in metadata and metadata['Batch Size'] == 16
    assert isinstance(metadata['Parameters'], int) and isinstance(metadata['FLOPs'], int)
    assert metadata['Parameters'] > 1e6 and metadata['FLOPs'] > 1e9, 'run python tools/model_index.py --update'
    published = metadata.get('Published Parameters (M)')
    if published is not None:  # equal to the published count at its printed precision
        digits = len(str(published).partition('.')[2])
        assert round(metadata['Parameters'] / 1e6, digits) == published
    tasks = {result['Task'] for result in model.get('Results', [])}
    if tasks:
        masks = any('Mask R-CNN' in architecture for architecture in metadata['Architecture'])
        assert tasks == ({'Object Detection', 'Instance Segmentation'} if masks else
                         {'Object Detection'} if detection else {'Semantic Segmentation'})
        assert model['README'].startswith('https://github.com/')
    weights = model.get('Weights')
    assert weights is None or weights.startswith(('https://github.com/', 'https://drive.google.com/',
                                                  'https://download.openmmlab.com/'))


def test_readme_model_zoo_table_is_made_from_the_index():
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    assert zoo_table(INDEX) in readme, 'paste the output of python tools/model_index.py --table into the README'


# ------------------------------------------------------------------------------------------------- slow
# CrossFormer++'s published FLOPs are those of its models with CrossFormer's long-distance grouping (groups of
# (H/I) x (W/I) tokens): the released CrossFormer++ code, and these configs, attend G x G groups, whose attention
# products are 30-31G fewer at the papers' sizes (README, FLOPs and parameters).
PAPER_GROUPING = {'model.backbone.lda_type': 'paper'}


@pytest.mark.slow
@pytest.mark.parametrize('model', MODELS, ids=lambda model: model['Name'])
def test_counts_are_the_tools_and_near_the_published(model):
    metadata = model['Metadata']
    result = count_model(model, REPO)
    assert (metadata['Parameters'], metadata['FLOPs']) == (result.params, result.flops), (
        f"{model['Name']}: the tool counts {result.params} parameters and {result.flops} FLOPs; "
        'run python tools/model_index.py --update')
    published = metadata.get('Published FLOPs (G)')
    if published is None:
        return
    if model['In Collection'] == 'CrossFormer++':
        released = result
        result = count_model(model, REPO, cfg_options=PAPER_GROUPING)
        assert 20e9 < result.attention_flops - released.attention_flops < 40e9
    assert abs(result.flops / 1e9 / published - 1) <= 0.05, (model['Name'], result.flops / 1e9, published)
