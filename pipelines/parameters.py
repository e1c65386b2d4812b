"""What each pipeline parameter means: one description per name, written into every pipeline's docstring."""

import inspect
from collections.abc import Callable

PARAMETER_HELP: dict[str, str] = {
    "backend": "kubernetes: stages run as PyTorchJobs and the model on the InferenceService; local: processes on "
               "this machine (kfp.local).",
    "store_root": "Store URI under which this run's folder goes; empty: datasets and token shards under "
                  "s3://<data bucket>/pipelines, checkpoints, evaluations and the report under "
                  "s3://<checkpoint bucket>/pipelines.",
    "run_tag": "Name of this run's folder under store_root; empty: the pipeline run's id.",
    "runs_dir": "Local backend: where stage runs are recorded for `simplear jobs`; empty: $SIMPLEAR_RUNS_DIR or "
                "~/.simplear/runs.",
    "preset": "Model preset (tiny, 0.5B, 1.5B): visual tokenizer, and transformer shape of a random init.",
    "pretrain_images": "Synthetic shapes images of the pretraining set.",
    "pretrain_data_seed": "Seed of the pretraining set.",
    "sft_images": "Synthetic shapes images of the SFT set (their short captions are also the GRPO prompts).",
    "sft_data_seed": "Seed of the SFT set.",
    "pretrain_tag_weights": "Mix of the pretraining set's GenEval tags as tag:weight,... (whole numbers, e.g. "
                            "two_object:2,position:3); empty: every tag equally.",
    "sft_tag_weights": "Mix of the SFT set's GenEval tags (and so of the GRPO prompts), as pretrain_tag_weights.",
    "eval_per_tag": "Held-out prompts per GenEval tag.",
    "procs_per_node": "Ranks per stage run; 0: the pool's GPUs per pod on Kubernetes, 1 locally.",
    "nodes": "Pods of the pretrain, SFT and GRPO runs (Master plus nodes - 1 Workers, torchrun across them; DeepSpeed "
             "as configured); 1 locally.",
    "batch_size": "Pretrain / SFT sequences per rank per step.",
    "pretrain_steps": "Pretraining optimizer steps.",
    "pretrain_learning_rate": "Peak pretraining learning rate (cosine schedule, 5% warmup).",
    "sft_steps": "SFT optimizer steps.",
    "sft_learning_rate": "Peak SFT learning rate.",
    "train_lr_schedule": "Pretrain / SFT schedule after a 5% warmup: constant, constant_with_warmup, linear or cosine "
                         "(upstream SimpleAR: constant).",
    "train_weight_decay": "Pretrain / SFT AdamW weight decay (upstream SimpleAR: 0.01).",
    "train_adam_beta2": "Pretrain / SFT AdamW beta2 (upstream SimpleAR: the HF Trainer's 0.999).",
    "train_loss_on": "Pretrain / SFT loss positions: all (every token, prompt text included: upstream SimpleAR's) or "
                     "codes (the visual codes only).",
    "train_prompt_prefixes": "Pretrain / SFT caption prefixes: upstream (a random one of upstream SimpleAR's training "
                             "list) or generation (always 'A highly realistic image of ', as generate and the fixed "
                             "evaluation protocol prompt).",
    "grpo_steps": "GRPO optimizer steps (the length of its schedule).",
    "grpo_batch_size": "GRPO rollout images per rank per step (whole groups).",
    "grpo_num_generations": "GRPO images per prompt: one group.",
    "grpo_num_iterations": "GRPO optimizer passes over each batch of rollouts.",
    "grpo_learning_rate": "Peak GRPO learning rate.",
    "grpo_max_minutes": "GRPO stops with a checkpoint after this many minutes of training; 0: no limit.",
    "grpo_policy": "GRPO policy: plain (rollouts without CFG, upstream SimpleAR's) or guided (rollouts with cfg_scale "
                   "against negative_prompt, the loss on that guided distribution).",
    "grpo_prompt_prefix": "Text put before each GRPO caption (upstream SimpleAR: 'A photo of ').",
    "grpo_beta": "GRPO KL coefficient to the SFT model; 0 loads no reference (upstream SimpleAR: 0.04).",
    "rollout": "Where GRPO rollouts come from: in_process (the trainer samples) or server (a rollout server).",
    "rollout_engine": "Engine of the rollout server: vllm or torch.",
    "eval_protocol": "Evaluation protocol: fixed (the fixed prefix, cfg_scale and negative_prompt) or simplear "
                     "(upstream SimpleAR's: random prefixes, its negative prompt, CFG 6, 4 images per prompt).",
    "rollout_placement": "Kubernetes: where the rollout server runs: sidecar (in the trainer's master pod, localhost, "
                         "NCCL weight sync) or pool (a Deployment on the rollout pool); empty: the platform's.",
    "eval_images_per_prompt": "Images per held-out prompt in every evaluation.",
    "cfg_scale": "Classifier-free guidance scale of fixed-protocol evaluation, guided GRPO rollouts and the serving "
                 "check.",
    "negative_prompt": "Unconditional row's prompt in fixed-protocol evaluation, guided GRPO rollouts and the serving "
                       "check; empty: the CFG-dropped prompt.",
    "seed": "Seed of the model's init (pretrain and SFT data order), of the first evaluation image (+1 per image), of "
            "the serving check and of GRPO.",
    "model_name": "Name the new model is served under, in the routes /v1/models/<model_name>:predict (on Kubernetes "
                  "also the InferenceService's name, unless inference_service names one); empty: simplear locally, "
                  "the platform's InferenceService on Kubernetes.",
    "inference_service": "The InferenceService created or updated to serve the new model, and the name it serves "
                         "under; empty: model_name, else the platform's (the chart's kserve.inferenceServiceName).",
    "stage_timeout_minutes": "A stage run still going after this many minutes fails the step.",
    "init_model_uri": "Store URI of the checkpoint to start from (complete: has manifest.json).",
    "model_uri": "Store URI of the checkpoint to evaluate and serve.",
    "model_label": "Name of the evaluated model in the report.",
    "sft_tokens_uri": "Store URI of the SFT token dataset (complete: has manifest.json).",
    "prompts_data_uri": "Store URI of the meta file whose captions are the GRPO prompts (a folder: its meta.jsonl).",
    "eval_data_uri": "Store URI of a folder holding the held-out evaluation_metadata.jsonl.",
    "pretrain_meta_uri": "Store URI of the pretraining meta file: JSON list or JSONL of {image_path, caption} records "
                         "(caption a string or {short, long}), or a mixing YAML of such files; image paths are store "
                         "URIs or relative to the file.",
    "sft_meta_uri": "Store URI of the SFT meta file (same formats as pretrain_meta_uri).",
    "meta_uri": "Store URI of the meta file to tokenize (JSON, JSONL or mixing YAML; a folder: its meta.jsonl).",
    "grpo_prompts_uri": "Store URI of the meta file whose captions are the GRPO prompts; empty: sft_meta_uri's.",
    "vision_checkpoint_uri": "Store URI of the Cosmos tokenizer folder (encoder.jit, decoder.jit); the models record "
                             "it in their vision.json, so later stages read it from the checkpoint.",
    "text_lm_uri": "Store URI of the Qwen2.5 text LM (Hugging Face folder with its tokenizer) pretraining starts "
                   "from, its vocabulary grown by the special tokens and visual codes; empty: a random init of the "
                   "preset.",
    "pretrain_tokens_uri": "Store URI of the pretraining token dataset (complete: has manifest.json).",
    "resolution": "Pixels per side of the tokenized images (and so of the trained model); 0: the preset's.",
    "grpo_caption": "Which caption of a {short, long} record is a GRPO prompt: short, long, or mixed (one at random).",
    "grpo_rewards": "GRPO rewards as name[:weight], comma-separated, from the registry: geneval_shapes, clip, "
                    "aesthetic (e.g. clip:0.7,aesthetic:0.3).",
    "clip_model_uri": "Store URI of the CLIP model (Hugging Face folder) the clip and aesthetic rewards read.",
    "aesthetic_head_uri": "Store URI of LAION's aesthetic MLP (.safetensors) the aesthetic reward reads.",
    "eval_score_shapes": "Score evaluations with the exact shapes checker (shapes prompts); false: write the "
                         "GenEval-layout images only, for GenEval's own detector.",
    "base_image": "Image of the component pods: the chart's base image (simplear with the Pipelines SDK).",
    "release": "Helm release of the platform to use when its namespace holds several; empty: the only one there "
               "(its ConfigMap names the store Secret, buckets, pools and images).",
    "cpu_node_selector": "nodeSelector of the component pods: the chart's pools.cpu.nodeSelector.",
    "cpu_tolerations": "Tolerations of the component pods: the chart's pools.cpu.tolerations.",
}


def with_parameter_help(pipeline: Callable) -> Callable:
    """Append an Args section describing every parameter of `pipeline`, which kfp turns into their descriptions."""
    names = list(inspect.signature(pipeline).parameters)
    missing = [name for name in names if name not in PARAMETER_HELP]
    if missing:
        raise KeyError(f"{pipeline.__name__}: no description for parameters {missing}")
    args = "".join(f"\n    {name}: {PARAMETER_HELP[name]}" for name in names)
    pipeline.__doc__ = f"{inspect.cleandoc(pipeline.__doc__ or '')}\n\nArgs:{args}\n"
    return pipeline
