"""transformers' own LED tokenizer tests, ported (tests/upstream_tokenizer_checks.py), run on ledviz's
LEDTokenizer / LEDTokenizerFast and on transformers' classes on the same files; the two records
must be equal. Every upstream test is accounted for: ported, a documented deliberate difference,
or skipped with the reason it does not apply."""

from __future__ import annotations

import pytest

from ledviz.tokenization import LEDTokenizer, LEDTokenizerFast
from tokenizer_fixtures import dirs  # noqa: F401 (fixture: a trained LED-style vocabulary)
from upstream_tokenizer_checks import DIFFERENCES, SKIPPED, Lib, ported_checks, write_tiny_vocab

transformers = pytest.importorskip("transformers", reason="transformers (test-only reference) is not installed")

CHECKS = ported_checks()

# the names of transformers 4.57.6's tests: TokenizerTesterMixin, and LED's own module
MIXIN_TESTS = """
test_add_special_tokens test_add_tokens test_add_tokens_tokenizer test_added_token_are_matched_longest_first
test_added_token_serializable test_added_tokens_do_lower_case test_added_tokens_serialization test_alignment_methods
test_batch_encode_dynamic_overflowing test_batch_encode_plus_batch_sequence_length
test_batch_encode_plus_overflowing_tokens test_batch_encode_plus_padding test_build_inputs_with_special_tokens
test_call test_chat_template test_chat_template_batched test_chat_template_dict test_chat_template_dict_saving
test_chat_template_file_priority test_chat_template_return_assistant_tokens_mask
test_chat_template_return_assistant_tokens_mask_truncated test_chat_template_save_loading
test_compare_add_special_tokens test_compare_prepare_for_model test_compare_pretokenized_inputs
test_continue_final_message test_continue_final_message_with_decoy_earlier_message
test_continue_final_message_with_trim test_conversion_reversible test_convert_tokens_to_string_format
test_create_token_type_ids test_embedded_special_tokens test_empty_input_string
test_encode_decode_fast_slow_all_tokens test_encode_decode_with_spaces test_encode_plus_with_padding
test_fast_only_inputs test_get_vocab test_internal_consistency test_is_fast test_jinja_loopcontrols
test_jinja_strftime test_local_files_only test_mask_output test_max_length_equal
test_maximum_encoding_length_pair_input test_maximum_encoding_length_single_input test_model_input_names_signature
test_np_encode_plus_sent_to_model test_num_special_tokens_to_add_equal test_number_of_added_tokens
test_offsets_mapping test_padding test_padding_different_model_input_name test_padding_side_in_kwargs
test_padding_to_multiple_of test_padding_warning_message_fast_tokenizer test_padding_with_attention_mask
test_pickle_added_tokens test_pickle_subword_regularization_tokenizer test_pickle_tokenizer test_prepare_for_model
test_prepare_seq2seq_batch test_pretokenized_inputs test_right_and_left_padding test_right_and_left_truncation
test_rust_and_python_full_tokenizers test_rust_tokenizer_add_prefix_space test_rust_tokenizer_signature
test_save_and_load_tokenizer test_save_pretrained test_save_sentencepiece_tokenizer
test_save_slow_from_fast_and_reload_fast test_saving_tokenizer_trainer
test_sentencepiece_tokenize_and_convert_tokens_to_string test_sentencepiece_tokenize_and_decode
test_separate_tokenizers test_sequence_ids test_special_token_addition test_special_tokens_initialization
test_special_tokens_initialization_with_non_empty_additional_special_tokens test_special_tokens_map_equal
test_special_tokens_mask test_special_tokens_mask_input_pairs test_split_special_tokens
test_subword_regularization_tokenizer test_token_type_ids test_tokenization_python_rust_equals
test_tokenize_special_tokens test_tokenizer_fast_store_full_signature
test_tokenizer_initialization_with_conflicting_key test_tokenizer_mismatch_warning
test_tokenizer_slow_store_full_signature test_tokenizers_common_ids_setters test_tokenizers_common_properties
test_tokenizers_special_tokens_properties_unset test_torch_encode_plus_sent_to_model test_training_new_tokenizer
test_training_new_tokenizer_with_special_tokens_change test_truncation_side_in_kwargs
""".split()
LED_TESTS = ["test_prepare_batch", "test_prepare_batch_empty_target_text", "test_tokenizer_as_target_length",
             "test_prepare_batch_not_longer_than_maxlen", "test_special_tokens", "test_global_attention_mask",
             "test_pretokenized_inputs", "test_embeded_special_tokens"]


@pytest.fixture(scope="module")
def libs(dirs, tmp_path_factory):  # noqa: F811 (dirs is the imported fixture)
    """Both libraries on the same two folders: upstream's tiny vocabulary, and a Hub-like LED folder
    (saved by transformers' fast tokenizer from the trained vocabulary, model_max_length 16384)."""
    root = tmp_path_factory.mktemp("upstream_led_tok")
    tiny = write_tiny_vocab(str(root / "tiny"))
    real = str(root / "real")
    transformers.LEDTokenizerFast.from_pretrained(str(dirs["raw"]), model_max_length=16384).save_pretrained(real)
    return {
        "ledviz": Lib("ledviz", LEDTokenizer, LEDTokenizerFast, "ledviz", tiny, real),
        "transformers": Lib("transformers", transformers.LEDTokenizer, transformers.LEDTokenizerFast, "transformers",
                            tiny, real),
    }


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_upstream_check(name, libs):
    """The upstream test's assertions hold on both libraries, and ledviz saw what transformers saw."""
    theirs = CHECKS[name](libs["transformers"])
    ours = CHECKS[name](libs["ledviz"])
    assert ours == theirs, f"{name}: ledviz and transformers differ\n ours:   {ours}\n theirs: {theirs}"


def test_every_upstream_check_is_accounted_for():
    upstream = set(MIXIN_TESTS) | set(LED_TESTS)
    ported, skipped = set(CHECKS), set(SKIPPED)
    assert not ported & skipped, ported & skipped
    assert set(DIFFERENCES) <= ported
    assert upstream == ported | skipped, {"missing": upstream - ported - skipped, "extra": (ported | skipped) - upstream}
    assert all(SKIPPED.values()) and all(DIFFERENCES.values())


def test_deliberate_differences_are_in_the_readme():
    """Each difference a ported check asserts is in the README's one list (by the words it uses)."""
    import pathlib

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("Deliberate differences from transformers", 1)[1].split("\n- **", 1)[0]
    for phrase in ("global_attention_mask", "init_kwargs", "src_lang", "AssertionError", "verbose"):
        assert phrase in section, phrase
