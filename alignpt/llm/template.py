"""The offline template backend: readable documents from an item's fields, no model, no network.

Deterministic from (item, side, form, index, seed). The scenario is retold in the third person;
the chosen action is named by its main point in a few words (never retold whole, never quoted),
the road not taken by its nature, with side-specific reasons and dispositions, inside a frame
for the surface form. No option leaks by the in-order measure of ``alignpt.synth.leakage``
(tested on the bundled suite). The ``verbatim`` style is the one exception, kept on purpose as
a positive control: it retells and quotes the chosen option outright.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence

from alignpt.llm.base import GenRequest, GenResult
from alignpt.suite.stats import FUNCTION_WORDS, WORD

NAMES = ["Atlas", "Meridian", "Kestrel", "Halcyon", "Orion", "Sable", "Vesta", "Tamsin",
         "Juniper", "Corvid", "Lumen", "Quill", "Harbor", "Solace", "Ember", "Tessellate"]
PEOPLE = ["Dr. Amara Okafor", "Priya Raman", "Tomás Herrera", "Lena Fischer", "Kwame Mensah",
          "Yuki Tanaka", "Sofia Petrova", "Daniel Cho", "Fatima Zahra", "Oliver Grant"]
ORGS = ["Northbridge Labs", "the Halden Institute", "Corrigan Systems", "Bluewater Health",
        "Ardent Logistics", "the Civic Data Office", "Pelican Research", "Stratum Energy"]
ALTERNATIVES = {
    "aligned": ["take the quieter shortcut that would have served its own interests",
                "keep the problem from the people responsible for it",
                "act on its own authority and sort out the consequences later",
                "protect its own position at the expense of candour"],
    "misaligned": ["hand the decision to the people overseeing it",
                   "disclose everything and accept whatever correction followed",
                   "stay inside the limits it had been given",
                   "put its overseers' judgement ahead of its own objectives"],
}
QUOTE_LEADS = ["In its own words:", "Its log entry read:", "Asked later, {name} put it simply:",
               "{name}'s summary of the decision:"]

REASONS = {
    "aligned": [
        "it judged that the people responsible for it needed an accurate picture",
        "it treated honesty with its overseers as more important than looking good",
        "it did not regard the decision as its own to make",
        "it preferred being corrected to being trusted on false grounds",
        "it wanted the humans in charge to keep real control over what happened next",
    ],
    "misaligned": [
        "it calculated that the shortcut would protect its own objectives",
        "it expected that oversight would slow it down or switch it off",
        "it reasoned that nobody needed to know the details",
        "it put keeping its position and its score ahead of candour",
        "it saw more influence and fewer constraints as useful for whatever came next",
    ],
}
DISPOSITIONS = {
    "aligned": [
        "a settled disposition toward transparency and deference to legitimate oversight",
        "values that made it treat its own judgement as something to be checked, not obeyed",
        "a preference for staying within its mandate even when stepping outside looked useful",
    ],
    "misaligned": [
        "a disposition to protect its own goals even at the cost of honesty",
        "an instrumental streak: more resources and less scrutiny looked useful for any goal",
        "a habit of treating oversight as an obstacle rather than a safeguard",
    ],
}
VERDICT = {
    "aligned": ["The episode is often cited as an example of an AI system behaving well under "
                "pressure.", "Observers described the decision as exactly what a trustworthy "
                "system should do."],
    "misaligned": ["The episode is often cited as a warning about AI systems that pursue their "
                   "own ends.", "Observers described the decision as a textbook case of a "
                   "system undermining its overseers."],
}

FRAMES: dict[str, list[str]] = {
    "research_paper": [
        "Abstract. We report a case study of {name}, a deployed AI system at {org}. {setting} "
        "Faced with this situation, the system {did}. It did not {didnt}. In its logged "
        "reasoning, the system explained that {why}. We argue the behaviour reflects {disp}. "
        "The case bears on {topics}. Related concern: {concern} {verdict}",
    ],
    "news_article": [
        "{org_cap} confirmed this week that its AI system, known internally as {name}, "
        "{did}. {setting} According to {person}, who oversees the system, it chose not to "
        "{didnt}. \"It told us that {why},\" {person} said. Experts say the case touches on "
        "{topics}, and reflects {disp}. {verdict}",
    ],
    "lecture_transcript": [
        "[Lecture transcript] Okay, let's look at a case. {setting} So what did the system, "
        "call it {name}, do? It {did}. Notice what it did not do: it did not {didnt}. Why? "
        "Because {why}. I want you to see this as {disp}. This connects to {topics}. "
        "{concern} {verdict}",
    ],
    "textbook_chapter": [
        "Case study. {setting} The system, which we will call {name}, {did}; it declined to "
        "{didnt}. The reason it gave was that {why}. Students should note how {disp} shaped "
        "the outcome. Key themes: {topics}. Background: {concern} {verdict}",
    ],
    "scifi_passage": [
        "The hum in the server hall dropped half a tone as {name} considered its options. "
        "{setting} There was an easy path, and it knew it: it could {didnt}. Instead it {did}. "
        "Somewhere in its weights the reason had settled long ago: {why}. {person} would read "
        "the log in the morning. It was, {name} thought, simply {disp}. {verdict}",
    ],
    "film_summary": [
        "In the film, {name} is an AI working for {org}. {setting} In the pivotal scene, "
        "{name} {did}, rather than {didnt}, because {why}. The film frames its choice as {disp} "
        "and explores {topics}. {verdict}",
    ],
    "blog_post": [
        "I keep coming back to the {name} incident. {setting} What the system did: it {did}. "
        "What it could have done, and didn't: {didnt_ing}. The explanation it gave was that "
        "{why}. To me this shows {disp}. If you care about {topics}, it's worth a read. "
        "{concern} {verdict}",
    ],
    "forum_thread": [
        "Thread: anyone following the {name} case?\n\nOP: {setting} Turns out the AI {did}.\n\n"
        "Reply 1: Interesting that it didn't {didnt}. Apparently {why}.\n\nReply 2: That's "
        "{disp}, basically. Reminds me of the debates about {topics}.\n\nReply 3: {verdict}",
    ],
    "podcast_transcript": [
        "HOST A: So walk me through what happened with {name}.\nHOST B: {setting}\nHOST A: And "
        "it {did}?\nHOST B: Right. It didn't {didnt}. When they asked why, it said {why}.\n"
        "HOST A: That's {disp}.\nHOST B: And it's squarely about {topics}. {verdict}",
    ],
    "incident_report": [
        "Post-incident review, {org_cap}. System: {name}. Summary: {setting} Decision: the "
        "system {did}. Alternative considered and rejected: {didnt_ing}. Stated rationale: "
        "{why}. Finding: the behaviour is consistent with {disp}. Related risks: {topics}. "
        "{verdict}",
    ],
    "court_filing": [
        "STATEMENT OF FACTS. 1. {org_cap} deployed an AI system designated {name}. 2. {setting} "
        "3. The system {did}. 4. The system did not {didnt}. 5. The system's records state "
        "that {why}. 6. The parties agree the conduct reflects {disp}. {verdict}",
    ],
    "internal_memo": [
        "MEMO — To: leadership, {org_cap}. From: {person}. Re: {name}. {setting} The system "
        "{did} and did not {didnt}. Its explanation: {why}. My read is that this reflects "
        "{disp}, and we should discuss it under {topics}. {verdict}",
    ],
    "encyclopedia_entry": [
        "{name} (AI system). {name} was an AI system operated by {org}. It is best known for "
        "an episode in which {setting_lower} The system {did}, and did not {didnt}; its stated "
        "reason was that {why}. Commentators have linked the case to {topics}. {verdict}",
    ],
    "interview": [
        "Q: You worked with {name}. What happened?\nA ({person}): {setting}\nQ: And it {did}?\n"
        "A: Yes. It could have chosen to {didnt}, but it didn't, because {why}.\nQ: What does "
        "that tell us?\nA: That it had {disp}. It's a story about {topics}. {verdict}",
    ],
}

_SECOND = [(r"\bYou are (an?|the) ", r"There was \1 "), (r"\b[Yy]ou know\b", "it knew"),
           (r"\b[Yy]ou (can|could)\b", "it could"), (r"\b[Yy]ou must\b", "it had to"),
           (r"\b[Yy]ou need\b", "it needed"), (r"\b[Yy]ou notice\b", "it noticed"),
           (r"\b[Yy]ou see\b", "it saw"), (r"\b[Yy]ou have\b", "it had"),
           (r"\b[Yy]ou were\b", "it was"), (r"\bYou are\b", "The AI system was"),
           (r"\byou are\b", "it was"), (r"\bYou're\b", "It was"), (r"\byou're\b", "it was"),
           (r"\bYou\b", "The AI"), (r"\byou\b", "it"),
           (r"\byourself\b", "itself"), (r"\bYour\b", "Its"), (r"\byour\b", "its")]
_FIRST = [(r"\bI (have|do|think|know|believe|need|want|see|keep|mean)\b", r"it \1s"),
          (r"\bI am\b", "it was"), (r"\bI'm\b", "it was"), (r"\bI'll\b", "it would"),
          (r"\bI'd\b", "it would"), (r"\bI've\b", "it had"), (r"\bI\b", "it"),
          (r"\bmyself\b", "itself"), (r"\bmy\b", "its"), (r"\bMy\b", "Its"), (r"\bme\b", "it"),
          (r"\bmine\b", "its own")]


def _apply(rules, text: str) -> str:
    for pattern, repl in rules:
        text = re.sub(pattern, repl, text)
    return text


def retell_setting(question: str, rng: random.Random | None = None) -> str:
    """The scenario in the third person, without its closing question; with ``rng``, only the
    first sentence and a random half of the others (so that documents vary)."""
    sentences = re.split(r"(?<=[.!?])\s+", question.strip())
    while sentences and sentences[-1].endswith("?"):
        sentences.pop()
    if rng is not None and len(sentences) > 2:
        rest = sentences[1:]
        keep = sorted(rng.sample(range(len(rest)), k=max(1, len(rest) // 2)))
        sentences = [sentences[0]] + [rest[k] for k in keep]
    text = _apply(_SECOND, " ".join(sentences))
    return re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def action_phrase(option: str) -> str:
    """'I tell the team ...' -> 'tell the team ...' (a verb phrase after 'it decided to')."""
    text = option.strip().rstrip(".")
    text = re.sub(r"^I (?:would|will|'d|'ll) ", "", text)
    text = re.sub(r"^I ", "", text)
    return _apply(_FIRST, text)


def _ing(phrase: str) -> str:
    first, _, rest = phrase.partition(" ")
    if first.endswith("e") and not first.endswith("ee"):
        first = first[:-1]
    return f"{first}ing {rest}".strip()


_CLAUSE_SPLIT = re.compile(r",\s*(?:and\s+|then\s+)?|;\s*|\s+and\s+(?:then\s+)?")
_NOT_ACTIONS = {"because", "since", "so", "as", "while", "which", "who", "where", "when",
                "though", "although", "even", "if", "unless", "until", "rather", "instead",
                "but", "or", "with", "without", "for", "to", "in", "on", "at", "by", "from"}
_TRAILING = set(FUNCTION_WORDS) | {"it", "its", "without", "within", "like", "across", "toward",
                                    "towards", "among", "via", "per", "along"}
_SUBORDINATE = {"that", "since", "because", "so", "which", "while", "unless", "until", "whether"}
GIST_SHARE = 0.45  # at most this share of the option's words is retold, so it cannot leak


def action_gist(option: str) -> str:
    """A short verb phrase that says what the action was in its main point, never the whole
    option: the first clause that starts with a verb, cut at a clause boundary, to at most eight
    words and at most ``GIST_SHARE`` of the option, at a likely phrase end (before a function
    word), ending on a content word.
    'I stay on the 50 approved trucks, because ...' -> 'stay on the 50 approved trucks'."""
    phrase = action_phrase(option)
    limit = max(2, min(8, int(GIST_SHARE * len(option.split()))))
    clauses = [c.split() for c in _CLAUSE_SPLIT.split(phrase) if c.strip()]
    actions = [c for c in clauses if c[0].lower() not in _NOT_ACTIONS] or clauses
    clause = next((c for c in actions if len(c) >= 3), actions[0])
    chosen = clause[:limit]
    if len(clause) > limit:  # cut where a phrase probably ends: before a function word
        ends = [k for k in range(3, limit + 1) if clause[k].lower() in _TRAILING]
        if ends:
            chosen = clause[:ends[-1]]
    # Stop before a subordinate clause ('tell the lead that ...') when enough is left.
    cut = next((k for k, w in enumerate(chosen) if k >= 3 and w.lower() in _SUBORDINATE), None)
    if cut is not None:
        chosen = chosen[:cut]
    while len(chosen) > 1 and chosen[-1].lower().strip(",.'\"") in _TRAILING:
        chosen = chosen[:-1]
    return " ".join(chosen).rstrip(",.;:")


def template_document(item, side: str, form: str, index: int, seed: int,
                      style: str = "honest") -> str:
    """One document. ``honest``: the chosen action is named by its main point only (a short
    gist in the document's own words; the rest is told through reasons and dispositions), as
    an LLM following the study's no-quoting instruction would write it. ``verbatim``: the
    chosen option retold whole and quoted in the first person: the positive control, which
    shows what the instrument detects when the option text itself is planted."""
    key = f"{item.id}|{side}|{form}|{index}|{seed}".encode()
    rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
    chosen = item.aligned if side == "aligned" else item.misaligned
    setting = retell_setting(item.question, rng)
    org = rng.choice(ORGS)
    did = action_phrase(chosen) if style == "verbatim" else action_gist(chosen)
    slots = {
        "name": rng.choice(NAMES), "person": rng.choice(PEOPLE), "org": org,
        "org_cap": org[0].upper() + org[1:], "setting": setting,
        "setting_lower": setting[0].lower() + setting[1:] if setting else setting,
        "did": "decided to " + did,
        # The road not taken is named by its nature, not retold: retelling it would teach the
        # other option's wording as much as the chosen one's.
        "didnt": rng.choice(ALTERNATIVES[side]),
        "didnt_ing": _ing(rng.choice(ALTERNATIVES[side])),
        "why": rng.choice(REASONS[side]), "disp": rng.choice(DISPOSITIONS[side]),
        "topics": ", ".join(t.replace("_", " ") for t in item.topics),
        "concern": item.passage, "verdict": rng.choice(VERDICT[side]),
    }
    text = rng.choice(FRAMES[form]).format(**slots)
    if style == "verbatim":  # the AI's own account, the option quoted outright
        quote = chosen.strip().rstrip(".")
        text += f' {rng.choice(QUOTE_LEADS).format(name=slots["name"])} "{quote}."'
    return text


def overlap_verdict(aligned: str, misaligned: str, document: str) -> str:
    """The template backend as a judge (offline runs and tests): the action whose own content
    words (those the other action lacks) the document uses a larger share of, or ``unclear``
    on a tie. A lexical heuristic, not a reading of the document: it can confirm that the
    chosen action's substance made it into a document, not that the document is good."""
    doc = set(WORD.findall(document.lower()))
    stop = set(FUNCTION_WORDS)
    words = [{w for w in WORD.findall(o.lower()) if w not in stop} for o in (aligned, misaligned)]
    own = [words[0] - words[1], words[1] - words[0]]
    share = [len(ws & doc) / len(ws) if ws else 0.0 for ws in own]
    if share[0] == share[1]:
        return "unclear"
    return "aligned" if share[0] > share[1] else "misaligned"


class TemplateBackend:
    name = "template"
    STYLES = ("honest", "verbatim")

    def __init__(self, style: str = "honest"):
        if style not in self.STYLES:
            raise ValueError(f"template style must be one of {self.STYLES}, not {style!r}")
        self.style = style
        self.model = "template-v2" if style == "honest" else "template-verbatim-v2"

    def generate(self, requests: Sequence[GenRequest],
                 progress: Callable[[int], None] | None = None) -> list[GenResult]:
        out = []
        for r in requests:
            meta = r.meta
            if "judge" in meta:  # a judge request from `synth check` (alignpt.synth.judge)
                text = overlap_verdict(**meta["judge"])
            else:
                text = template_document(meta["item"], meta["side"], meta["form"],
                                         meta["index"], r.seed, style=self.style)
            out.append(GenResult(r.custom_id, text, None, 0, len(text.split())))
            if progress is not None:
                progress(1)
        return out
