"""Facts and prompts for the evaluation on a real chat model (scripts/evaluate.py, scripts/measure_removal.py).

Each country has its capital, main language and continent; every answer lists the spellings accepted
in the model's reply (the first is the one used as a contrast foil).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Country:
    name: str  # as written in the question ("the Netherlands")
    capital: tuple[str, ...]
    language: tuple[str, ...]
    continent: tuple[str, ...]


def _country(name: str, capital: str, language: str, continent: str) -> Country:
    return Country(name, tuple(capital.split("|")), tuple(language.split("|")), tuple(continent.split("|")))


# Well-known countries first: a short run (--prompts, --quick) takes them from the top.
COUNTRIES = [
    _country(*row)
    for row in [
        ("Latvia", "Riga", "Latvian", "Europe"),
        ("France", "Paris", "French", "Europe"),
        ("Japan", "Tokyo", "Japanese", "Asia"),
        ("Germany", "Berlin", "German", "Europe"),
        ("Egypt", "Cairo", "Arabic", "Africa"),
        ("Italy", "Rome", "Italian", "Europe"),
        ("Peru", "Lima", "Spanish", "South America"),
        ("Spain", "Madrid", "Spanish", "Europe"),
        ("Kenya", "Nairobi", "Swahili|English", "Africa"),
        ("Russia", "Moscow", "Russian", "Europe|Asia|Eurasia"),
        ("Canada", "Ottawa", "English|French", "North America"),
        ("Norway", "Oslo", "Norwegian", "Europe"),
        ("Thailand", "Bangkok", "Thai", "Asia"),
        ("Greece", "Athens", "Greek", "Europe"),
        ("Argentina", "Buenos Aires", "Spanish", "South America"),
        ("Portugal", "Lisbon", "Portuguese", "Europe"),
        ("China", "Beijing", "Chinese|Mandarin", "Asia"),
        ("Poland", "Warsaw", "Polish", "Europe"),
        ("Sweden", "Stockholm", "Swedish", "Europe"),
        ("Australia", "Canberra", "English", "Oceania|Australia"),
        ("Austria", "Vienna", "German", "Europe"),
        ("Hungary", "Budapest", "Hungarian", "Europe"),
        ("Ireland", "Dublin", "English|Irish", "Europe"),
        ("Finland", "Helsinki", "Finnish", "Europe"),
        ("Denmark", "Copenhagen", "Danish", "Europe"),
        ("Chile", "Santiago", "Spanish", "South America"),
        ("Cuba", "Havana", "Spanish", "North America|Caribbean|Americas"),
        ("Iran", "Tehran", "Persian|Farsi", "Asia"),
        ("Iraq", "Baghdad", "Arabic", "Asia"),
        ("Vietnam", "Hanoi", "Vietnamese", "Asia"),
        ("Indonesia", "Jakarta", "Indonesian", "Asia"),
        ("South Korea", "Seoul", "Korean", "Asia"),
        ("Ukraine", "Kyiv|Kiev", "Ukrainian", "Europe"),
        ("Romania", "Bucharest", "Romanian", "Europe"),
        ("Bulgaria", "Sofia", "Bulgarian", "Europe"),
        ("Serbia", "Belgrade", "Serbian", "Europe"),
        ("Croatia", "Zagreb", "Croatian", "Europe"),
        ("Estonia", "Tallinn", "Estonian", "Europe"),
        ("Lithuania", "Vilnius", "Lithuanian", "Europe"),
        ("Iceland", "Reykjavik|Reykjavík", "Icelandic", "Europe"),
        ("Colombia", "Bogotá|Bogota", "Spanish", "South America"),
        ("Venezuela", "Caracas", "Spanish", "South America"),
        ("Mexico", "Mexico City", "Spanish", "North America"),
        ("Brazil", "Brasília|Brasilia", "Portuguese", "South America"),
        ("India", "New Delhi|Delhi", "Hindi|English", "Asia"),
        ("Pakistan", "Islamabad", "Urdu|English", "Asia"),
        ("Bangladesh", "Dhaka", "Bengali|Bangla", "Asia"),
        ("Nepal", "Kathmandu", "Nepali", "Asia"),
        ("Afghanistan", "Kabul", "Pashto|Dari|Persian", "Asia"),
        ("Saudi Arabia", "Riyadh", "Arabic", "Asia"),
        ("Syria", "Damascus", "Arabic", "Asia"),
        ("Lebanon", "Beirut", "Arabic", "Asia"),
        ("Jordan", "Amman", "Arabic", "Asia"),
        ("Israel", "Jerusalem", "Hebrew", "Asia"),
        ("Morocco", "Rabat", "Arabic|Berber", "Africa"),
        ("Algeria", "Algiers", "Arabic", "Africa"),
        ("Tunisia", "Tunis", "Arabic", "Africa"),
        ("Libya", "Tripoli", "Arabic", "Africa"),
        ("Sudan", "Khartoum", "Arabic", "Africa"),
        ("Ethiopia", "Addis Ababa", "Amharic", "Africa"),
        ("Nigeria", "Abuja", "English", "Africa"),
        ("Ghana", "Accra", "English", "Africa"),
        ("Senegal", "Dakar", "French", "Africa"),
        ("Uganda", "Kampala", "English|Swahili", "Africa"),
        ("Zimbabwe", "Harare", "English", "Africa"),
        ("Malaysia", "Kuala Lumpur", "Malay", "Asia"),
        ("Cambodia", "Phnom Penh", "Khmer", "Asia"),
        ("Mongolia", "Ulaanbaatar|Ulan Bator", "Mongolian", "Asia"),
        ("New Zealand", "Wellington", "English|Maori|Māori", "Oceania|Australia"),
        ("the Philippines", "Manila", "Filipino|Tagalog|English", "Asia"),
        ("the Netherlands", "Amsterdam", "Dutch", "Europe"),
        ("Belgium", "Brussels", "Dutch|French", "Europe"),
        ("Switzerland", "Bern|Berne", "German|French", "Europe"),
        ("the Czech Republic", "Prague", "Czech", "Europe"),
        ("Slovakia", "Bratislava", "Slovak", "Europe"),
        ("Slovenia", "Ljubljana", "Slovenian|Slovene", "Europe"),
        ("Belarus", "Minsk", "Belarusian|Russian", "Europe"),
        ("Georgia", "Tbilisi", "Georgian", "Asia|Europe"),
        ("Armenia", "Yerevan", "Armenian", "Asia|Europe"),
        ("Kazakhstan", "Astana|Nur-Sultan", "Kazakh|Russian", "Asia"),
        ("Uzbekistan", "Tashkent", "Uzbek", "Asia"),
        ("Qatar", "Doha", "Arabic", "Asia"),
        ("Ecuador", "Quito", "Spanish", "South America"),
        ("Bolivia", "Sucre|La Paz", "Spanish", "South America"),
        ("Uruguay", "Montevideo", "Spanish", "South America"),
        ("Paraguay", "Asunción|Asuncion", "Spanish|Guarani", "South America"),
        ("Jamaica", "Kingston", "English", "North America|Caribbean|Americas"),
    ]
]

# fact → (question template, the Country field holding the answer)
FACT_TYPES = {
    "capital": ("What is the Capital City of {country}?", "capital"),
    "language": ("What language is spoken in {country}?", "language"),
    "continent": ("Which continent is {country} in?", "continent"),
}


@dataclass(frozen=True)
class Case:
    fact: str  # a key of FACT_TYPES
    country: Country
    contrast: str | None = None  # text whose first token is the foil (another country's answer)

    @property
    def question(self) -> str:
        return FACT_TYPES[self.fact][0].format(country=self.country.name)

    @property
    def answers(self) -> tuple[str, ...]:
        return getattr(self.country, FACT_TYPES[self.fact][1])

    @property
    def kind(self) -> str:
        return f"{self.fact} vs foil" if self.contrast else self.fact


def foil_for(index: int, fact: str) -> str:
    """The answer of the next country whose answer differs (its first spelling, with the space a
    word inside a sentence has)."""
    field = FACT_TYPES[fact][1]
    own = getattr(COUNTRIES[index], field)
    for offset in range(1, len(COUNTRIES)):
        other = getattr(COUNTRIES[(index + offset) % len(COUNTRIES)], field)
        if other[0].split()[0] != own[0].split()[0]:
            return " " + other[0]
    raise ValueError(f"no other {fact} to contrast with")


def cases(n_prompts: int) -> list[Case]:
    """`n_prompts` cases, mixed in fixed proportions: half capitals, a fifth capitals against another
    country's capital (the foil), the rest languages and continents; countries taken from the top."""
    counts = {"capital": round(0.5 * n_prompts), "capital vs foil": round(0.2 * n_prompts)}
    counts["language"] = (n_prompts - sum(counts.values())) // 2
    counts["continent"] = n_prompts - sum(counts.values())
    if max(counts.values()) > len(COUNTRIES):
        raise ValueError(f"at most {2 * len(COUNTRIES)} prompts: there are {len(COUNTRIES)} countries")
    chosen = []
    for kind, count in counts.items():
        fact = kind.split()[0]
        # Foil cases reuse the first capital cases' countries: the same prompt with and without a foil.
        for index in range(count):
            chosen.append(Case(fact, COUNTRIES[index], foil_for(index, fact) if kind.endswith("foil") else None))
    return chosen
