"""Templated documents for "which sentence answered" (scripts/measure_documents.py): each a short
profile of one person in five sentences, with a question whose answer sits in exactly one of them.

Every profile states five facts (city, job, pet, instrument, favourite colour), each in a sentence of its
own, in an order that changes from document to document; the asked fact cycles through the five and
through the sentence positions, so neither a fact nor a position is always the answer. No answer word
occurs in another sentence of its document or in the question.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMES = ("Anna", "Omar", "Lena", "Ravi", "Sofia", "Marco", "Yuki", "Pablo", "Nadia", "Tom", "Elif", "Jonas",
         "Maya", "Igor", "Chloe", "Kofi", "Ines", "Liam", "Zara", "Hugo", "Mila", "Sven", "Lucia", "Arjun",
         "Nora", "Felix", "Amara", "Diego", "Hana", "Oscar")
CITIES = ("Paris", "Tokyo", "Cairo", "Berlin", "Lima", "Oslo", "Rome", "Madrid", "Dublin", "Vienna")
JOBS = ("doctor", "teacher", "pilot", "baker", "farmer", "lawyer", "nurse", "painter", "chef", "dentist")
PETS = ("dog", "cat", "parrot", "rabbit", "horse", "turtle", "goat", "hamster", "snake", "duck")
INSTRUMENTS = ("piano", "guitar", "violin", "drums", "flute", "trumpet", "cello", "harp", "banjo", "saxophone")
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown")

#: fact → (its sentence, the question about it, the values it takes).
FACTS = {
    "city": ("{name} lives in {value}.", "In which city does {name} live?", CITIES),
    "job": ("{name} works as a {value}.", "What is {name}'s job?", JOBS),
    "pet": ("{name} has a pet {value}.", "What pet does {name} have?", PETS),
    "instrument": ("{name} plays the {value}.", "Which instrument does {name} play?", INSTRUMENTS),
    "colour": ("{name}'s favourite colour is {value}.", "What is {name}'s favourite colour?", COLOURS),
}


@dataclass(frozen=True)
class Document:
    name: str
    sentences: tuple[str, ...]  # in the order they appear
    question: str
    answer: str  # the value asked for; occurs in exactly one sentence
    answer_sentence: int  # its index in `sentences`
    fact: str

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    @property
    def prompt(self) -> str:
        """The user's message: the document, a blank line, the question."""
        return f"{self.text}\n\n{self.question}"


def document(index: int) -> Document:
    """The index-th document (deterministic): its person, their five facts in a rotated order, and the
    question about one fact, placed at sentence position index mod 5."""
    name = NAMES[index % len(NAMES)]
    facts = list(FACTS)
    values = {fact: FACTS[fact][2][(7 * index + 3 * number) % len(FACTS[fact][2])]
              for number, fact in enumerate(facts)}
    asked = facts[index % len(facts)]
    position = (index // len(facts) + index) % len(facts)
    others = [fact for fact in facts if fact != asked]
    shift = index % len(others)
    others = others[shift:] + others[:shift]
    order = others[:position] + [asked] + others[position:]
    sentences = tuple(FACTS[fact][0].format(name=name, value=values[fact]) for fact in order)
    question = FACTS[asked][1].format(name=name)
    answer = values[asked]
    holding = [number for number, sentence in enumerate(sentences) if answer.lower() in sentence.lower()]
    if holding != [position] or answer.lower() in question.lower():
        raise ValueError(f"document {index}: the answer {answer!r} must occur in its sentence only")
    return Document(name, sentences, question, answer, position, asked)


def documents(count: int = 30) -> list[Document]:
    return [document(index) for index in range(count)]


if __name__ == "__main__":
    for item in documents():
        print(f"[{item.fact} @ {item.answer_sentence}] {item.prompt!r} -> {item.answer}")
