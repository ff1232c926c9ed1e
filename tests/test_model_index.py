"""The OpenMMLab model index (model-index.yml, configs/*/metafile.yml), the one source of the model zoo tables: every
config has an entry and every entry a config, the published numbers next to the counted ones, and (slow) the counted
parameters and FLOPs equal to swin-backbones-flops' and within 5% of the published FLOPs. The tables generated from
the index are checked in test_docs.py, the entries' parameters and backbones against the configs in
test_configs.py."""
import glob
import os.path as osp

import pytest

from swin_backbones.api import list_backbones
from swin_backbones.flops import DETECTION_SHAPE, SEGMENTATION_SHAPE
from swin_backbones.model_index import count_model, input_size, load_model_index, published_flops_options

from .helpers import REPO

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
    assert metadata['Backbone'] in list_backbones()
    assert isinstance(model.get('Notes', ''), str)
    assert isinstance(metadata['Parameters'], int) and isinstance(metadata['FLOPs'], int)
    assert metadata['Parameters'] > 1e6 and metadata['FLOPs'] > 1e9, 'run python tools/model_index.py'
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
    options = published_flops_options(model)
    assert not options or (metadata.get('Published FLOPs (G)') and all(key.startswith('model.backbone.')
                                                                       for key in options))
    weights = model.get('Weights')
    assert weights is None or weights.startswith(('https://github.com/', 'https://drive.google.com/',
                                                  'https://download.openmmlab.com/'))


# ------------------------------------------------------------------------------------------------- slow
@pytest.mark.slow
@pytest.mark.parametrize('model', MODELS, ids=lambda model: model['Name'])
def test_counts_are_the_tools_and_near_the_published(model):
    """The index's counts are the tool's, and within 5% of the published FLOPs; where the authors counted another
    attention grouping than their config file's (docs/user_guides/flops.md), with that grouping, which must then
    change the count."""
    metadata = model['Metadata']
    result = count_model(model, REPO)
    assert (metadata['Parameters'], metadata['FLOPs']) == (result.params, result.flops), (
        f"{model['Name']}: the tool counts {result.params} parameters and {result.flops} FLOPs; "
        'run python tools/model_index.py')
    published = metadata.get('Published FLOPs (G)')
    if published is None:
        return
    options = published_flops_options(model)
    if options:
        as_configured, result = result, count_model(model, REPO, cfg_options=options)
        assert result.flops != as_configured.flops
    assert abs(result.flops / 1e9 / published - 1) <= 0.05, (model['Name'], result.flops / 1e9, published)
