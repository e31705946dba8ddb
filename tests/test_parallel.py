"""llmbook.parallel, llmbook.model_parallel, llmbook.distributed: every strategy on 2 CPU processes (gloo) against 1 process; failures and bad input."""
import json, os, subprocess, time
import pytest, torch
from llmbook import parallel as P
from llmbook import model_parallel as MP
from llmbook import distributed as D

TOL = 1e-5  # fp32: sums in a different order differ by ~1e-8; AdamW magnifies to ~1e-6


@pytest.fixture(scope='module')
def res():
    "Two ranks running every correctness check: one torchrun job per module that registers checks."
    r = P.launch(['collectives', 'dp', 'zero1'], timeout=240)
    r |= P.launch(['tp', 'pp'], timeout=240, module='llmbook.model_parallel')
    return r | P.launch(['ddp', 'fsdp'], timeout=240, module='llmbook.distributed')


def test_collectives(res):
    c = res['collectives']
    r0, r1 = c['by_rank']
    assert r0['all_reduce'] == r1['all_reduce'] == [10., 12., 14., 16.]
    assert (r0['reduce_scatter'], r1['reduce_scatter']) == ([10., 12.], [14., 16.])
    assert r0['all_gather'] == r1['all_gather'] == [0., 1., 2., 3., 10., 11., 12., 13.]
    assert r1['broadcast'] == r1['send 0 -> recv 1'] == [0., 1., 2., 3.]
    assert c['ring_max_diff'] < TOL
    assert c['ring_bytes'] == P.ring_bytes('all_reduce', 2**18 * 4, 2) == 2**20


def test_data_parallel_matches_one_process(res):
    for kind in ('naive', 'bucketed'):
        assert res['dp'][kind]['loss_diff'] < TOL and res['dp'][kind]['grad_diff'] < TOL
    b = res['dp']['bucketed']
    assert b['buckets'] > 1 and 0 < b['sent_during_backward'] < b['buckets']


def test_zero1_matches_adamw_and_halves_state(res):
    z = res['zero1']
    assert z['weight_diff'] < TOL
    assert abs(z['state_bytes_per_rank'] / z['state_bytes_adamw'] - 0.5) < 0.01


def test_tensor_parallel_matches_one_process(res):
    for style in ('llama', 'gpt2'):
        t = res['tp'][style]
        assert max(t['logits_diff'], t['loss_diff'], t['grad_diff']) < TOL
        assert t['params_per_rank'] < 0.6 * t['params_full']


def test_pipeline_matches_one_process(res):
    for sched in ('gpipe', '1f1b'):
        assert res['pp'][sched]['loss_diff'] < TOL and res['pp'][sched]['grad_diff'] < TOL
    assert res['pp']['gpipe']['peak_in_flight'] == [4, 4]
    assert res['pp']['1f1b']['peak_in_flight'] == [2, 1]


def test_ddp_and_fsdp_strategies_match_one_process(res):
    for k in ('ddp', 'fsdp'):
        assert max(res[k]['weight_diff'], res[k]['loss_diff'], res[k]['state_dict_diff']) < TOL


def test_failing_rank_stops_the_job_with_its_error():
    t0 = time.time()
    with pytest.raises(RuntimeError, match='failed on purpose'):
        P.launch(['fail'], timeout=90)  # a hang would raise TimeoutExpired instead
    assert time.time() - t0 < 90


def test_missing_launcher_environment(monkeypatch):
    for k in P.LAUNCH_ENV: monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match='MASTER_ADDR.*launch with torchrun'):
        P.init_distributed()
    with pytest.raises(RuntimeError, match='launch with torchrun'): P.main(['dp'])


def test_unknown_check_and_usage():
    with pytest.raises(ValueError, match="unknown check.*'nope'"): P.run_checks('nope')
    with pytest.raises(SystemExit, match='usage: torchrun'): P.main([])


def test_world_size_must_divide_heads_layers_batch():
    with pytest.raises(ValueError, match='n_head=4 is not divisible by the tensor-parallel world size 3'):
        MP.tensor_parallel_(P.tiny_gpt(), 0, 3)
    with pytest.raises(ValueError, match='n_kv_head=2 is not divisible'):
        MP.tensor_parallel_(P.tiny_gpt(n_head=4, n_kv_head=2), 0, 4)
    with pytest.raises(ValueError, match='n_layer=4 is not divisible by the pipeline world size 3'):
        MP.split_layers(4, 3)
    with pytest.raises(ValueError, match='global batch 6 is not divisible by world size 4'):
        P.shard_rows(torch.zeros(6, 2), 0, 4)
    x, y = P.random_tokens(6)
    with pytest.raises(ValueError, match='does not split into 4 micro-batches'):
        MP.PipelineStep(MP.PipelineStage(P.tiny_gpt(), 0, 2), x, y, 4)
    with pytest.raises(ValueError, match="unknown schedule 'zigzag'"):
        MP.schedule_order('zigzag', 0, 2, 4)


def test_memory_model_against_the_zero_paper():
    # ZeRO paper, Figure 1: 7.5B parameters, 64 devices, K = 12
    for stage, gb in {0: 120, 1: 31.4, 2: 16.6, 3: 1.9}.items():
        assert abs(P.zero_model_state_bytes(7.5e9, 64, stage) / 1e9 - gb) < 0.05
    assert P.zero_comm_bytes(1e9, 64, 3) / P.zero_comm_bytes(1e9, 64, 0) == 1.5
    with pytest.raises(ValueError, match='stage 4'): P.zero_model_state_bytes(1e9, 8, 4)
    with pytest.raises(ValueError, match='unknown collective'): P.ring_bytes('all_to_all', 1, 2)


def test_pipeline_bubble_formula():
    for sched in ('gpipe', '1f1b'):
        for p, m in ((2, 1), (3, 5), (8, 8)):
            assert abs(MP.bubble(MP.simulate_schedule(sched, p, m)) - MP.bubble_fraction(p, m)) < 1e-9


def test_launcher_args_for_one_and_several_machines():
    assert P.launcher_args(2) == ['--standalone', '--nproc-per-node', '2']
    assert P.launcher_args(8, 2, 1, 'node0:29500') == [
        '--nnodes', '2', '--node-rank', '1', '--nproc-per-node', '8',
        '--master-addr', 'node0', '--master-port', '29500']
    with pytest.raises(ValueError, match='needs a rendezvous endpoint'): P.launcher_args(8, 2, 1)
    with pytest.raises(ValueError, match='node_rank=2 must be in 0..1'): P.launcher_args(8, 2, 2, 'h:1')
    with pytest.raises(ValueError, match="'node0' is not HOST:PORT"): P.launcher_args(8, 2, 0, 'node0')
    with pytest.raises(ValueError, match="unknown strategy 'zero'"): D.make_strategy('zero')


def _metrics(run):
    return [json.loads(l) for l in (run/'metrics.jsonl').read_text().splitlines()]


@pytest.mark.filterwarnings('ignore:no Project Gutenberg')
def test_llmbook_train_nproc_2_follows_one_process(tmp_path):
    "`llmbook train --nproc 2` (DDP, 2 ranks) against 1 process, same global batch."
    from llmbook.cli import main
    from llmbook.data import load_austen
    text = tmp_path/'austen.txt'
    text.write_text(load_austen(1342)['Pride and Prejudice'][:100_000])
    args = ['train', '--preset', 'austen-tiny', '--steps', '6', '--text', str(text), '--quiet',
            '--device', 'cpu', '--set', 'eval_every=3', 'eval_batches=2', 'ckpt_every=6', 'sample_steps=[]']
    main(args + ['--out', str(tmp_path/'one')])
    r = subprocess.run(['llmbook', *args, '--out', str(tmp_path/'two'), '--nproc', '2'], capture_output=True,
                       text=True, timeout=300, env=os.environ | {'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = _metrics(tmp_path/'one'), _metrics(tmp_path/'two')
    assert [m['step'] for m in one] == [m['step'] for m in two] == list(range(7))
    for a, b in zip(one, two):
        for k in ('loss', 'val_loss', 'grad_norm'):
            if a[k] is not None: assert abs(a[k] - b[k]) < 1e-4, (a['step'], k, a[k], b[k])
    from safetensors.torch import load_file
    w1, w2 = (load_file(tmp_path/d/'last'/'model.safetensors') for d in ('one', 'two'))
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4


def test_llmbook_train_bad_launch_options_fail_before_work(tmp_path):
    from llmbook.cli import main
    with pytest.raises(SystemExit, match='needs a rendezvous endpoint'):
        main(['train', '--preset', 'austen-tiny', '--nproc', '2', '--nnodes', '2', '--out', str(tmp_path/'x')])
    assert not (tmp_path/'x').exists()


@pytest.mark.filterwarnings('ignore:no Project Gutenberg')
def test_llmbook_train_fsdp_resumed_follows_one_process(tmp_path):
    "`--strategy fsdp` on 2 ranks, stopped and resumed, against 1 process; checkpoints interchangeable."
    from llmbook.cli import main
    from llmbook.data import load_austen
    from llmbook.checkpoint import load_checkpoint
    from safetensors.torch import load_file
    text = tmp_path/'austen.txt'
    text.write_text(load_austen(1342)['Pride and Prejudice'][:20_000])
    args = ['train', '--preset', 'austen-tiny', '--steps', '4', '--text', str(text), '--quiet', '--device', 'cpu',
            '--set', 'eval_every=2', 'eval_batches=1', 'ckpt_every=4', 'sample_steps=[2]', 'sample_tokens=8']
    fsdp = ['llmbook', *args, '--out', str(tmp_path/'two'), '--nproc', '2', '--strategy', 'fsdp']
    main(args + ['--out', str(tmp_path/'one')])
    for extra in (['--stop-after', '2'], ['--resume']):  # sample, best and last saved by every rank
        r = subprocess.run(fsdp + extra, capture_output=True, text=True, timeout=120,
                           env=os.environ | {'OMP_NUM_THREADS': '1'})
        assert r.returncode == 0, r.stderr[-3000:]
    one, two = _metrics(tmp_path/'one'), _metrics(tmp_path/'two')
    assert [m['step'] for m in one] == [m['step'] for m in two] == list(range(5))
    for a, b in zip(one, two):
        for k in ('loss', 'val_loss', 'grad_norm'):
            if a[k] is not None: assert abs(a[k] - b[k]) < 1e-4, (a['step'], k, a[k], b[k])
    assert (tmp_path/'one'/'samples.jsonl').read_text() == (tmp_path/'two'/'samples.jsonl').read_text()
    for f in ('model', 'state'):  # same files, same tensors (optimizer state included)
        t1, t2 = (load_file(tmp_path/d/'last'/f'{f}.safetensors') for d in ('one', 'two'))
        assert sorted(t1) == sorted(t2)
        assert max((t1[k].double() - t2[k].double()).abs().max().item()
                   for k in t1 if not k.startswith('rng.')) < 1e-4
    load_checkpoint(tmp_path/'two')  # one process reads the FSDP run's checkpoint
