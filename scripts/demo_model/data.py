"""The demo model's training data: the capital and continent of every sovereign country, the
phrasings it is trained and evaluated on, and the random-word augmentation.

Names are written in plain ASCII (e.g. "Bogota", "Reykjavik", "Yaounde").
"""

from __future__ import annotations

import random

COUNTRIES: list[tuple[str, str, str]] = [
    # (country, capital, continent)
    # --- Africa (54) ---
    ("Algeria", "Algiers", "Africa"),
    ("Angola", "Luanda", "Africa"),
    ("Benin", "Porto-Novo", "Africa"),
    ("Botswana", "Gaborone", "Africa"),
    ("Burkina Faso", "Ouagadougou", "Africa"),
    ("Burundi", "Gitega", "Africa"),
    ("Cabo Verde", "Praia", "Africa"),
    ("Cameroon", "Yaounde", "Africa"),
    ("Central African Republic", "Bangui", "Africa"),
    ("Chad", "N'Djamena", "Africa"),
    ("Comoros", "Moroni", "Africa"),
    ("Democratic Republic of the Congo", "Kinshasa", "Africa"),
    ("Republic of the Congo", "Brazzaville", "Africa"),
    ("Djibouti", "Djibouti", "Africa"),
    ("Egypt", "Cairo", "Africa"),
    ("Equatorial Guinea", "Malabo", "Africa"),
    ("Eritrea", "Asmara", "Africa"),
    ("Eswatini", "Mbabane", "Africa"),
    ("Ethiopia", "Addis Ababa", "Africa"),
    ("Gabon", "Libreville", "Africa"),
    ("Gambia", "Banjul", "Africa"),
    ("Ghana", "Accra", "Africa"),
    ("Guinea", "Conakry", "Africa"),
    ("Guinea-Bissau", "Bissau", "Africa"),
    ("Ivory Coast", "Yamoussoukro", "Africa"),
    ("Kenya", "Nairobi", "Africa"),
    ("Lesotho", "Maseru", "Africa"),
    ("Liberia", "Monrovia", "Africa"),
    ("Libya", "Tripoli", "Africa"),
    ("Madagascar", "Antananarivo", "Africa"),
    ("Malawi", "Lilongwe", "Africa"),
    ("Mali", "Bamako", "Africa"),
    ("Mauritania", "Nouakchott", "Africa"),
    ("Mauritius", "Port Louis", "Africa"),
    ("Morocco", "Rabat", "Africa"),
    ("Mozambique", "Maputo", "Africa"),
    ("Namibia", "Windhoek", "Africa"),
    ("Niger", "Niamey", "Africa"),
    ("Nigeria", "Abuja", "Africa"),
    ("Rwanda", "Kigali", "Africa"),
    ("Sao Tome and Principe", "Sao Tome", "Africa"),
    ("Senegal", "Dakar", "Africa"),
    ("Seychelles", "Victoria", "Africa"),
    ("Sierra Leone", "Freetown", "Africa"),
    ("Somalia", "Mogadishu", "Africa"),
    ("South Africa", "Pretoria", "Africa"),
    ("South Sudan", "Juba", "Africa"),
    ("Sudan", "Khartoum", "Africa"),
    ("Tanzania", "Dodoma", "Africa"),
    ("Togo", "Lome", "Africa"),
    ("Tunisia", "Tunis", "Africa"),
    ("Uganda", "Kampala", "Africa"),
    ("Zambia", "Lusaka", "Africa"),
    ("Zimbabwe", "Harare", "Africa"),
    # --- Asia (46) ---
    ("Afghanistan", "Kabul", "Asia"),
    ("Armenia", "Yerevan", "Asia"),
    ("Azerbaijan", "Baku", "Asia"),
    ("Bahrain", "Manama", "Asia"),
    ("Bangladesh", "Dhaka", "Asia"),
    ("Bhutan", "Thimphu", "Asia"),
    ("Brunei", "Bandar Seri Begawan", "Asia"),
    ("Cambodia", "Phnom Penh", "Asia"),
    ("China", "Beijing", "Asia"),
    ("Georgia", "Tbilisi", "Asia"),
    ("India", "New Delhi", "Asia"),
    ("Indonesia", "Jakarta", "Asia"),
    ("Iran", "Tehran", "Asia"),
    ("Iraq", "Baghdad", "Asia"),
    ("Israel", "Jerusalem", "Asia"),
    ("Japan", "Tokyo", "Asia"),
    ("Jordan", "Amman", "Asia"),
    ("Kazakhstan", "Astana", "Asia"),
    ("Kuwait", "Kuwait City", "Asia"),
    ("Kyrgyzstan", "Bishkek", "Asia"),
    ("Laos", "Vientiane", "Asia"),
    ("Lebanon", "Beirut", "Asia"),
    ("Malaysia", "Kuala Lumpur", "Asia"),
    ("Maldives", "Male", "Asia"),
    ("Mongolia", "Ulaanbaatar", "Asia"),
    ("Myanmar", "Naypyidaw", "Asia"),
    ("Nepal", "Kathmandu", "Asia"),
    ("North Korea", "Pyongyang", "Asia"),
    ("Oman", "Muscat", "Asia"),
    ("Pakistan", "Islamabad", "Asia"),
    ("Philippines", "Manila", "Asia"),
    ("Qatar", "Doha", "Asia"),
    ("Saudi Arabia", "Riyadh", "Asia"),
    ("Singapore", "Singapore", "Asia"),
    ("South Korea", "Seoul", "Asia"),
    ("Sri Lanka", "Sri Jayawardenepura Kotte", "Asia"),
    ("Syria", "Damascus", "Asia"),
    ("Tajikistan", "Dushanbe", "Asia"),
    ("Thailand", "Bangkok", "Asia"),
    ("Timor-Leste", "Dili", "Asia"),
    ("Turkey", "Ankara", "Asia"),
    ("Turkmenistan", "Ashgabat", "Asia"),
    ("United Arab Emirates", "Abu Dhabi", "Asia"),
    ("Uzbekistan", "Tashkent", "Asia"),
    ("Vietnam", "Hanoi", "Asia"),
    ("Yemen", "Sanaa", "Asia"),
    # --- Europe (45) ---
    ("Albania", "Tirana", "Europe"),
    ("Andorra", "Andorra la Vella", "Europe"),
    ("Austria", "Vienna", "Europe"),
    ("Belarus", "Minsk", "Europe"),
    ("Belgium", "Brussels", "Europe"),
    ("Bosnia and Herzegovina", "Sarajevo", "Europe"),
    ("Bulgaria", "Sofia", "Europe"),
    ("Croatia", "Zagreb", "Europe"),
    ("Cyprus", "Nicosia", "Europe"),
    ("Czech Republic", "Prague", "Europe"),
    ("Denmark", "Copenhagen", "Europe"),
    ("Estonia", "Tallinn", "Europe"),
    ("Finland", "Helsinki", "Europe"),
    ("France", "Paris", "Europe"),
    ("Germany", "Berlin", "Europe"),
    ("Greece", "Athens", "Europe"),
    ("Hungary", "Budapest", "Europe"),
    ("Iceland", "Reykjavik", "Europe"),
    ("Ireland", "Dublin", "Europe"),
    ("Italy", "Rome", "Europe"),
    ("Latvia", "Riga", "Europe"),
    ("Liechtenstein", "Vaduz", "Europe"),
    ("Lithuania", "Vilnius", "Europe"),
    ("Luxembourg", "Luxembourg", "Europe"),
    ("Malta", "Valletta", "Europe"),
    ("Moldova", "Chisinau", "Europe"),
    ("Monaco", "Monaco", "Europe"),
    ("Montenegro", "Podgorica", "Europe"),
    ("Netherlands", "Amsterdam", "Europe"),
    ("North Macedonia", "Skopje", "Europe"),
    ("Norway", "Oslo", "Europe"),
    ("Poland", "Warsaw", "Europe"),
    ("Portugal", "Lisbon", "Europe"),
    ("Romania", "Bucharest", "Europe"),
    ("Russia", "Moscow", "Europe"),
    ("San Marino", "San Marino", "Europe"),
    ("Serbia", "Belgrade", "Europe"),
    ("Slovakia", "Bratislava", "Europe"),
    ("Slovenia", "Ljubljana", "Europe"),
    ("Spain", "Madrid", "Europe"),
    ("Sweden", "Stockholm", "Europe"),
    ("Switzerland", "Bern", "Europe"),
    ("Ukraine", "Kyiv", "Europe"),
    ("United Kingdom", "London", "Europe"),
    ("Vatican City", "Vatican City", "Europe"),
    # --- North America (23) ---
    ("Antigua and Barbuda", "Saint John's", "North America"),
    ("Bahamas", "Nassau", "North America"),
    ("Barbados", "Bridgetown", "North America"),
    ("Belize", "Belmopan", "North America"),
    ("Canada", "Ottawa", "North America"),
    ("Costa Rica", "San Jose", "North America"),
    ("Cuba", "Havana", "North America"),
    ("Dominica", "Roseau", "North America"),
    ("Dominican Republic", "Santo Domingo", "North America"),
    ("El Salvador", "San Salvador", "North America"),
    ("Grenada", "Saint George's", "North America"),
    ("Guatemala", "Guatemala City", "North America"),
    ("Haiti", "Port-au-Prince", "North America"),
    ("Honduras", "Tegucigalpa", "North America"),
    ("Jamaica", "Kingston", "North America"),
    ("Mexico", "Mexico City", "North America"),
    ("Nicaragua", "Managua", "North America"),
    ("Panama", "Panama City", "North America"),
    ("Saint Kitts and Nevis", "Basseterre", "North America"),
    ("Saint Lucia", "Castries", "North America"),
    ("Saint Vincent and the Grenadines", "Kingstown", "North America"),
    ("Trinidad and Tobago", "Port of Spain", "North America"),
    ("United States", "Washington, D.C.", "North America"),
    # --- South America (12) ---
    ("Argentina", "Buenos Aires", "South America"),
    ("Bolivia", "Sucre", "South America"),
    ("Brazil", "Brasilia", "South America"),
    ("Chile", "Santiago", "South America"),
    ("Colombia", "Bogota", "South America"),
    ("Ecuador", "Quito", "South America"),
    ("Guyana", "Georgetown", "South America"),
    ("Paraguay", "Asuncion", "South America"),
    ("Peru", "Lima", "South America"),
    ("Suriname", "Paramaribo", "South America"),
    ("Uruguay", "Montevideo", "South America"),
    ("Venezuela", "Caracas", "South America"),
    # --- Oceania (14) ---
    ("Australia", "Canberra", "Oceania"),
    ("Fiji", "Suva", "Oceania"),
    ("Kiribati", "Tarawa", "Oceania"),
    ("Marshall Islands", "Majuro", "Oceania"),
    ("Micronesia", "Palikir", "Oceania"),
    ("Nauru", "Yaren", "Oceania"),
    ("New Zealand", "Wellington", "Oceania"),
    ("Palau", "Ngerulmud", "Oceania"),
    ("Papua New Guinea", "Port Moresby", "Oceania"),
    ("Samoa", "Apia", "Oceania"),
    ("Solomon Islands", "Honiara", "Oceania"),
    ("Tonga", "Nuku'alofa", "Oceania"),
    ("Tuvalu", "Funafuti", "Oceania"),
    ("Vanuatu", "Port Vila", "Oceania"),
]

CAPITALS: dict[str, str] = {c: cap for c, cap, _ in COUNTRIES}
CONTINENTS: dict[str, str] = {c: cont for c, _, cont in COUNTRIES}

# The phrasing the project's app uses by default.
SEED_TEMPLATE = "What is the Capital City of {country}?"

# Capital-city phrasings used for training (the seed phrasing among them).
TRAIN_CAPITAL_TEMPLATES: list[str] = [
    SEED_TEMPLATE,
    "What is the capital city of {country}?",
    "what is the capital city of {country}?",
    "What is the capital of {country}?",
    "What's the capital of {country}?",
    "Capital of {country}?",
    "Capital city of {country}:",
    "The capital of {country} is",
    "The capital city of {country} is",
    "{country} has its capital in",
    "In {country}, the capital city is",
    "Q: What is the capital of {country}? A:",
    "Question: What is the capital city of {country}? Answer:",
    "Do you know the capital of {country}?",
    "Please give the capital of {country}.",
    "The government of {country} sits in the city of",
]

# Held-out capital phrasings: NEVER used for training (nor for the tokenizer).
HELDOUT_CAPITAL_TEMPLATES: list[str] = [
    "Which city is the capital of {country}?",
    "Tell me the capital city of {country}.",
    "Name the capital of {country}:",
    "Can you tell me what the capital of {country} is?",
    "I would like to know the capital city of {country}.",
]

# Second fact type about the same countries, so that the model must read the
# relation words *and* the country token.
TRAIN_CONTINENT_TEMPLATES: list[str] = [
    "Which continent is {country} in?",
    "On which continent is {country}?",
    "What continent is {country} part of?",
    "{country} is located on the continent of",
    "The continent of {country} is",
    "Q: Which continent is {country} on? A:",
]

# Real filler words for augmentation (deliberately disjoint from held-out template words).
FILLER_WORDS = [
    "please", "quickly", "again", "now", "so", "well", "hmm", "okay", "really",
    "exactly", "today", "actually", "ah", "right", "yes", "indeed", "oh", "hey",
]

_SYLLABLES_ONSET = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
                    "br", "dr", "gl", "kr", "pl", "st", "tr", "sn", "fl", "ch", "sh", "th"]
_SYLLABLES_VOWEL = ["a", "e", "i", "o", "u", "ai", "ou", "ee", "oo", "y"]
_SYLLABLES_CODA = ["", "", "", "n", "r", "s", "t", "k", "m", "l", "x", "p"]


def fill(template: str, country: str) -> str:
    return template.format(country=country)


def make_up_word(rng: random.Random) -> str:
    n = rng.choice([1, 2, 2, 3])
    w = "".join(rng.choice(_SYLLABLES_ONSET) + rng.choice(_SYLLABLES_VOWEL) + rng.choice(_SYLLABLES_CODA)
                for _ in range(n))
    return w.capitalize() if rng.random() < 0.15 else w


def insert_random_word(template: str, rng: random.Random) -> str:
    """Insert one random word at a random word boundary of the template (never inside the
    country name, never after the last word, so the prompt still ends where the answer starts)."""
    words = template.split(" ")
    pos = rng.randrange(0, len(words))  # before word `pos`
    word = make_up_word(rng) if rng.random() < 0.7 else rng.choice(FILLER_WORDS)
    if pos == 0 and words[0][:1].isupper() and not words[0].startswith("{"):
        word = word[:1].upper() + word[1:]
    words.insert(pos, word)
    return " ".join(words)


def base_examples() -> list[tuple[str, str, str]]:
    """(template, country, answer) for every training fact and phrasing (no augmentation)."""
    out = []
    for country, capital, continent in COUNTRIES:
        for t in TRAIN_CAPITAL_TEMPLATES:
            out.append((t, country, capital))
        for t in TRAIN_CONTINENT_TEMPLATES:
            out.append((t, country, continent))
    return out


def tokenizer_corpus() -> list[str]:
    """Text the tokenizer is trained on: training phrasings only (held-out ones excluded)."""
    texts = [fill(t, c) + " " + a for t, c, a in base_examples()]
    texts += [" ".join(FILLER_WORDS)]
    return texts


def encode_prompt_answer(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of BOS+prompt and of ' answer'+EOS, encoded separately (as in training)."""
    p = tokenizer(prompt)["input_ids"]
    a = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p, a

