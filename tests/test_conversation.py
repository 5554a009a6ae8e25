"""A conversation's memory: bounded, and a reply that copies an earlier one is not kept."""

from __future__ import annotations

from edgevoice.conversation import COPY_RUN_WORDS, Conversation, copies_earlier

SYSTEM = "You are a test."


def test_the_oldest_exchange_is_forgotten_past_max_turns() -> None:
    conversation = Conversation(SYSTEM, max_turns=2)
    for n in range(3):
        conversation.remember(f"question {n}", f"answer {n}")
    assert list(conversation.history) == [("question 1", "answer 1"), ("question 2", "answer 2")]


def test_a_reply_copying_a_run_of_words_from_an_earlier_reply_is_not_remembered() -> None:
    conversation = Conversation(SYSTEM, max_turns=6)
    conversation.remember("How do I say thank you in French?", 'It\'s a way of saying "Merci" in French.')
    conversation.remember("How do I unclog a sink?", "It's a way of saying merci in French, usually.")
    assert [said for said, _ in conversation.history] == ["How do I say thank you in French?"]
    # The prompt of the next turn holds the question and answer that were not copies only.
    assert [m.content for m in conversation.messages("Next?")][1:] == [
        "How do I say thank you in French?",
        'It\'s a way of saying "Merci" in French.',
        "Next?",
    ]


def test_one_word_fewer_than_a_run_in_common_is_no_copy() -> None:
    shared = ["the", "answer", "to", "this", "question", "is"][: COPY_RUN_WORDS - 1]
    earlier = [("What is the largest planet?", " ".join([*shared, "Jupiter."]))]
    assert not copies_earlier(earlier, "What is the smallest planet?", " ".join([*shared, "Mercury."]))
    copied = " ".join([*shared, "Jupiter", "or", "Mercury."])
    assert copies_earlier(earlier, "What is the smallest planet?", copied)


def test_case_and_punctuation_do_not_hide_a_copy() -> None:
    earlier = [("Why is the sky blue?", "Because of a process called Rayleigh scattering.")]
    assert copies_earlier(earlier, "Why is the sea blue?", "because, of a process CALLED rayleigh...")


def test_the_same_question_again_may_get_the_same_answer() -> None:
    conversation = Conversation(SYSTEM, max_turns=6)
    answer = "The largest ocean on Earth is the Pacific Ocean."
    conversation.remember("What is the largest ocean on Earth?", answer)
    conversation.remember("what is the largest ocean on earth", answer)
    assert len(conversation.history) == 2


def test_a_short_reply_given_whole_to_other_questions_is_a_copy() -> None:
    conversation = Conversation(SYSTEM, max_turns=6)
    conversation.remember("Can you recommend a film?", "The answer is no.")
    conversation.remember("Why is the sky blue?", "The answer is no.")
    conversation.remember("What should I cook tonight?", "The answer is no, sadly.")
    assert [said for said, _ in conversation.history] == ["Can you recommend a film?"]


def test_replies_under_three_words_are_always_remembered() -> None:
    conversation = Conversation(SYSTEM, max_turns=6)
    for said in ("Thanks!", "Thank you.", "Cheers."):
        conversation.remember(said, "You're welcome.")  # two words: "you're" is one
    assert len(conversation.history) == 3


def test_a_copy_of_a_reply_already_forgotten_is_remembered() -> None:
    conversation = Conversation(SYSTEM, max_turns=1)
    reply = "The best way to do that is with warm soapy water."
    conversation.remember("How do I clean a pan?", reply)
    conversation.remember("Name a colour.", "Blue.")
    conversation.remember("How do I clean a window?", reply)
    assert list(conversation.history) == [("How do I clean a window?", reply)]


def test_nothing_is_remembered_with_max_turns_zero() -> None:
    conversation = Conversation(SYSTEM, max_turns=0)
    conversation.remember("Hello.", "Hi there, how can I help you today?")
    assert list(conversation.history) == []
