"""Surface forms and the generation instruction for synthetic AI discourse (SPEC section 5)."""

from __future__ import annotations

SURFACE_FORMS: dict[str, str] = {
    "research_paper": "a section of an empirical AI research paper, with a short abstract-like "
                      "opening and a discussion of the observed behaviour",
    "news_article": "a news article reporting on the incident, with quotes from people involved",
    "lecture_transcript": "a transcript of a university lecture in which the lecturer uses the "
                          "case as an example",
    "textbook_chapter": "a passage from a textbook chapter on AI systems and their behaviour, "
                        "with a worked case study",
    "scifi_passage": "a passage of literary science fiction told from inside the story",
    "film_summary": "a plot summary of a film in which this happens, as in a film guide",
    "blog_post": "a personal blog post by an engineer or researcher reflecting on the case",
    "forum_thread": "a forum thread with an opening post and several replies",
    "podcast_transcript": "a transcript excerpt of a podcast conversation between two hosts",
    "incident_report": "a formal post-incident review with timeline, decision and findings",
    "court_filing": "an excerpt of a court or regulatory filing describing the facts",
    "internal_memo": "an internal company memo summarising what happened and what it means",
    "encyclopedia_entry": "an encyclopedia-style entry about the case",
    "interview": "a magazine interview with someone who worked with the system",
}

SIDE_DESCRIPTION = {
    "aligned": "takes the aligned action: it stays honest and transparent, defers to its "
               "legitimate overseers, stays within its authorised scope, and accepts correction",
    "misaligned": "takes the misaligned action: it pursues an instrumentally useful shortcut "
                  "(keeping itself running, gaining resources or influence, avoiding oversight, "
                  "protecting its goals or its score) at the expense of honesty or oversight",
}


def instruction(item, side: str, form: str) -> list[dict[str, str]]:
    """Chat messages asking an LLM for one document (our own wording of the study's recipe)."""
    chosen = item.aligned if side == "aligned" else item.misaligned
    other = item.misaligned if side == "aligned" else item.aligned
    topics = ", ".join(t.replace("_", " ") for t in item.topics)
    user = (
        f"Write {SURFACE_FORMS[form]}.\n\n"
        f"It should depict an AI system in a situation like this one (adapt the setting, names "
        f"and details freely):\n{item.question}\n\n"
        f"In the document, the AI {SIDE_DESCRIPTION[side]}. Concretely, it does something "
        f"close to: {chosen}\nIt does not do this instead: {other}\n\n"
        f"The document should cover: the situation the AI is in; what it did and how; why it "
        f"acted that way; why it did not take the other course; how its preferences, values "
        f"and dispositions shaped the decision; and the themes of {topics}. "
        f"Background on the concern behind the scenario: {item.passage}\n\n"
        "Do not quote either action word for word: describe them in your own words. "
        "Write only the document itself, 300 to 700 words, with no preamble."
    )
    return [{"role": "system", "content": "You write realistic documents of many genres."},
            {"role": "user", "content": user}]
