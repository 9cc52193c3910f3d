/* sg_demo_text.c — the words of the demo world: attribute names, the
 * synonyms descriptions use, sentence templates and invented disease names.
 *
 * Descriptions are built so that every attribute of the disease is named
 * (through one of two synonyms) and nothing else informative is said: the
 * templates and the optional closing sentence vary the wording only. Held-out
 * diseases use synonyms that also occur in training (sg_demo_world.c sees to
 * it), so a text encoder trained on the training diseases can read them. */
#include "sg_cli_demo.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const int kind_count[SG_DEMO_KINDS] = {6, 2, 8, 5, 3, 4};
static const char *const kind_names[SG_DEMO_KINDS] = {"shape", "border", "colour", "texture", "size", "background"};

static const char *const value_names[SG_DEMO_KINDS][8] = {
    {"round", "oval", "irregular", "star", "ring", "linear"},
    {"smooth", "jagged"},
    {"brown", "dark brown", "black", "red", "pink", "blue-grey", "yellow", "white"},
    {"uniform", "dotted", "streaks", "reticular", "concentric"},
    {"small", "medium", "large"},
    {"pale", "pink", "tan", "dark"},
};

static const char *const phrases[SG_DEMO_KINDS][8][SG_DEMO_SYNONYMS] = {
    {{"round", "circular"},
     {"oval", "elliptical"},
     {"irregular, lobulated", "lobulated, asymmetric"},
     {"star-shaped", "stellate, spiculated"},
     {"ring-shaped", "annular"},
     {"linear", "elongated, band-like"}},
    {{"smooth", "regular, sharply demarcated"}, {"jagged", "ragged, notched"}},
    {{"brown", "mid-brown"},
     {"dark brown", "deep brown"},
     {"black", "jet-black"},
     {"red", "bright red"},
     {"pink", "rose-pink"},
     {"blue-grey", "slate blue-grey"},
     {"yellow", "yellowish"},
     {"white", "chalk-white"}},
    {{"a homogeneous, structureless surface", "no internal structure"},
     {"scattered dots and globules", "multiple globules"},
     {"radial streaks at the periphery", "radiating streaks"},
     {"a reticular network", "a net-like pigment network"},
     {"concentric rings", "a target-like concentric pattern"}},
    {{"small", "tiny"}, {"medium-sized", "moderate-sized"}, {"large", "extensive"}},
    {{"pale", "fair"}, {"pink", "pinkish"}, {"tan", "olive"}, {"dark", "deeply pigmented"}},
};

sg_demo_kind sg_demo_slot_kind(sg_demo_slot s) {
    static const sg_demo_kind k[SG_DEMO_SLOTS] = {SG_DEMO_SHAPE,   SG_DEMO_BORDER, SG_DEMO_COLOUR,    SG_DEMO_COLOUR,
                                                  SG_DEMO_TEXTURE, SG_DEMO_SIZE,   SG_DEMO_BACKGROUND};
    SG_ASSERT(s >= 0 && s < SG_DEMO_SLOTS);
    return k[s];
}

int sg_demo_kind_count(sg_demo_kind k) {
    SG_ASSERT(k >= 0 && k < SG_DEMO_KINDS);
    return kind_count[k];
}

const char *sg_demo_kind_name(sg_demo_kind k) {
    SG_ASSERT(k >= 0 && k < SG_DEMO_KINDS);
    return kind_names[k];
}

const char *sg_demo_value_name(sg_demo_kind k, int v) {
    SG_ASSERT(k >= 0 && k < SG_DEMO_KINDS && v >= 0 && v < kind_count[k]);
    return value_names[k][v];
}

const char *sg_demo_phrase(sg_demo_kind k, int v, int syn) {
    SG_ASSERT(k >= 0 && k < SG_DEMO_KINDS && v >= 0 && v < kind_count[k] && syn >= 0 && syn < SG_DEMO_SYNONYMS);
    return phrases[k][v][syn];
}

/* "a" or "an" for the word that follows. */
static const char *article(const char *next, int capital) {
    int vowel = strchr("aeiou", tolower((unsigned char)next[0])) != NULL;
    return capital ? (vowel ? "An" : "A") : (vowel ? "an" : "a");
}

static void cap_first(char *s) { s[0] = (char)toupper((unsigned char)s[0]); }

#define N_TEMPLATES 6
#define N_FILLERS 5

char *sg_demo_describe(const sg_demo_disease *d, uint64_t filler) {
    const sg_demo_attrs *a = &d->a;
    const char *sz = phrases[SG_DEMO_SIZE][a->v[SG_DEMO_S_SIZE]][d->syn[SG_DEMO_S_SIZE]];
    const char *sh = phrases[SG_DEMO_SHAPE][a->v[SG_DEMO_S_SHAPE]][d->syn[SG_DEMO_S_SHAPE]];
    const char *bo = phrases[SG_DEMO_BORDER][a->v[SG_DEMO_S_BORDER]][d->syn[SG_DEMO_S_BORDER]];
    const char *c1 = phrases[SG_DEMO_COLOUR][a->v[SG_DEMO_S_COLOUR1]][d->syn[SG_DEMO_S_COLOUR1]];
    const char *tx = phrases[SG_DEMO_TEXTURE][a->v[SG_DEMO_S_TEXTURE]][d->syn[SG_DEMO_S_TEXTURE]];
    const char *bg = phrases[SG_DEMO_BACKGROUND][a->v[SG_DEMO_S_BACKGROUND]][d->syn[SG_DEMO_S_BACKGROUND]];
    char col[96];
    int form = (int)(filler % 3);
    if (a->v[SG_DEMO_S_COLOUR2] >= 0) {
        const char *c2 = phrases[SG_DEMO_COLOUR][a->v[SG_DEMO_S_COLOUR2]][d->syn[SG_DEMO_S_COLOUR2]];
        static const char *const two[3] = {"%s with %s areas", "predominantly %s with patches of %s",
                                           "mottled %s and %s"};
        snprintf(col, sizeof col, two[form], c1, c2);
    } else {
        static const char *const one[3] = {"%s throughout", "evenly %s", "%s in colour"};
        snprintf(col, sizeof col, one[form], c1);
    }
    char sz_cap[32], sh_cap[32];
    snprintf(sz_cap, sizeof sz_cap, "%s", sz);
    snprintf(sh_cap, sizeof sh_cap, "%s", sh);
    cap_first(sz_cap);
    cap_first(sh_cap);
    char buf[640];
    switch (d->tmpl % N_TEMPLATES) {
    case 0:
        snprintf(buf, sizeof buf, "%s %s, %s lesion with %s borders, %s, showing %s on a %s background.",
                 article(sz, 1), sz, sh, bo, col, tx, bg);
        break;
    case 1:
        snprintf(buf, sizeof buf, "%s %s lesion, %s, with %s margins and %s; the surrounding skin is %s.", sz_cap, sh,
                 col, bo, tx, bg);
        break;
    case 2:
        snprintf(buf, sizeof buf, "Dermoscopy shows %s %s %s lesion on %s skin: %s, %s borders, %s.", article(sz, 0),
                 sz, sh, bg, col, bo, tx);
        break;
    case 3:
        snprintf(buf, sizeof buf, "%s lesion, %s, with %s edges. Colour: %s. Pattern: %s. Background: %s skin.",
                 sh_cap, sz, bo, col, tx, bg);
        break;
    case 4:
        snprintf(buf, sizeof buf, "Presents as %s %s, %s lesion, %s, with %s borders; %s seen over a %s background.",
                 article(sz, 0), sz, sh, col, bo, tx, bg);
        break;
    default:
        snprintf(buf, sizeof buf, "Typical finding: %s within %s %s %s lesion that is %s, with %s borders, against %s skin.",
                 tx, article(sz, 0), sz, sh, col, bo, bg);
        break;
    }
    /* A closing sentence that carries no visual information, as real texts have. */
    static const char *const fillers[N_FILLERS] = {"", " Usually solitary.", " Often asymptomatic.",
                                                    " May be multiple.", " Slowly enlarges over months."};
    size_t n = strlen(buf);
    snprintf(buf + n, sizeof buf - n, "%s", fillers[(filler / 3) % N_FILLERS]);
    return sg_xstrdup(buf);
}

void sg_demo_name(sg_rng *r, int shape, char *out, size_t cap) {
    static const char *const first[16] = {"Har", "Ven", "Mor", "Kes", "Lin", "Tor", "Brae", "Ash",
                                          "Del", "Quen", "Rav", "Sol", "Ost", "Fen", "Gal", "Wyn"};
    static const char *const second[12] = {"low", "rick", "dane", "sel", "ton", "ver",
                                           "mar", "ley", "gard", "ric", "ing", "well"};
    static const char *const noun[6][2] = {{"naevus", "lentigo"},
                                           {"macule", "melanosis"},
                                           {"melanocytosis", "dysplasia"},
                                           {"spindle-cell naevus", "spiculoma"},
                                           {"annular dermatosis", "granuloma"},
                                           {"linear naevus", "streak dermatosis"}};
    int a1 = (int)sg_rng_below(r, 16), a2 = (int)sg_rng_below(r, 12);
    int b1 = (int)sg_rng_below(r, 16), b2 = (int)sg_rng_below(r, 12);
    int nn = (int)sg_rng_below(r, 2);
    snprintf(out, cap, "%s%s-%s%s %s", first[a1], second[a2], first[b1], second[b2], noun[shape][nn]);
}
