/* Accept-Encoding negotiation; the rules are in accept_encoding.h.
 *
 * The field is scanned once, element by element. An element that does not
 * parse (bad characters, a malformed weight) is skipped up to the next comma
 * outside a quoted string, and the rest of the field still counts: a client
 * that sends one odd element keeps its other preferences. */
#include "accept_encoding.h"

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 tchar */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return 1;
    default:
        return 0;
    }
}

int tg_accept_encoding_parse_q(tg_str_t s, int *out)
{
    /* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
    if (s.len == 0 || (s.p[0] != '0' && s.p[0] != '1'))
        return -1;
    int v = (s.p[0] - '0') * 1000;
    if (s.len > 1) {
        if (s.p[1] != '.' || s.len > 5)
            return -1;
        int scale = 100;
        for (size_t i = 2; i < s.len; i++, scale /= 10) {
            if (s.p[i] < '0' || s.p[i] > '9')
                return -1;
            v += (s.p[i] - '0') * scale;
        }
    }
    if (v > 1000)
        return -1;
    *out = v;
    return 0;
}

void tg_accept_encoding_init(tg_accept_encoding_t *ae, const tg_str_t *offered, int n)
{
    if (n > TG_ACCEPT_ENCODING_MAX)
        n = TG_ACCEPT_ENCODING_MAX;
    ae->n = n;
    for (int i = 0; i < n; i++) {
        ae->offered[i] = offered[i];
        ae->q[i] = -1;
    }
    ae->identity = -1;
    ae->any = -1;
}

static void weigh(int16_t *slot, int q)
{
    if (*slot < q)
        *slot = (int16_t)q;
}

/* Record `coding` with weight q. */
static void element(tg_accept_encoding_t *ae, tg_str_t coding, int q)
{
    if (tg_str_eq_lit(coding, "*")) {
        weigh(&ae->any, q);
        return;
    }
    if (tg_str_caseeq_lit(coding, "identity")) {
        weigh(&ae->identity, q);
        return;
    }
    if (tg_str_caseeq_lit(coding, "x-gzip"))
        coding = TG_STR("gzip");
    for (int i = 0; i < ae->n; i++)
        if (tg_str_caseeq(coding, ae->offered[i]))
            weigh(&ae->q[i], q);
}

/* Skip a token; returns its end. */
static const char *token(const char *p, const char *end)
{
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    return p;
}

static const char *ows(const char *p, const char *end)
{
    while (p < end && is_ows(*p))
        p++;
    return p;
}

/* Skip a quoted-string starting at the quote; returns its end, or NULL when
 * it does not close. */
static const char *quoted(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\') {
            if (++p == end)
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* One element at p: `coding *( OWS ";" OWS name [ OWS "=" OWS value ] )`.
 * Returns where it stopped: at the comma or the end when the element parsed
 * (then it is recorded), anywhere else when it did not. */
static const char *parse_element(tg_accept_encoding_t *ae, const char *p, const char *end)
{
    const char *t = p;
    p = token(p, end);
    tg_str_t coding = {t, (size_t)(p - t)};
    if (coding.len == 0)
        return p;
    int q = 1000;
    for (;;) {
        p = ows(p, end);
        if (p == end || *p == ',')
            break;
        if (*p != ';')
            return p;
        p = ows(p + 1, end);
        const char *n = p;
        p = token(p, end);
        tg_str_t name = {n, (size_t)(p - n)};
        if (name.len == 0)
            return p;
        p = ows(p, end);
        if (p == end || *p != '=') {
            if (tg_str_caseeq_lit(name, "q"))
                return p; /* q without a value */
            continue;
        }
        p = ows(p + 1, end);
        const char *v = p;
        if (p < end && *p == '"') {
            if ((p = quoted(p, end)) == NULL)
                return end + 1;
        } else {
            p = token(p, end);
        }
        tg_str_t value = {v, (size_t)(p - v)};
        if (tg_str_caseeq_lit(name, "q") && tg_accept_encoding_parse_q(value, &q) != 0)
            return p;
    }
    element(ae, coding, q);
    return p;
}

void tg_accept_encoding_add(tg_accept_encoding_t *ae, tg_str_t value)
{
    if (value.len == 0)
        return; /* an empty header (value.p may be NULL) */
    const char *p = value.p, *end = value.p + value.len;
    while (p < end) {
        p = ows(p, end);
        if (p == end)
            break;
        if (*p == ',') {
            p++; /* empty element */
            continue;
        }
        const char *stop = parse_element(ae, p, end);
        if (stop > end)
            break; /* an unterminated quoted string runs to the end */
        p = stop;
        if (p < end && *p != ',') {
            /* malformed element: skip it, quotes included */
            while (p < end && *p != ',') {
                if (*p == '"') {
                    if ((p = quoted(p, end)) == NULL)
                        return;
                } else {
                    p++;
                }
            }
        }
        if (p < end)
            p++;
    }
}

int tg_accept_encoding_pick(const tg_accept_encoding_t *ae)
{
    int best = -1, bestq = 0;
    for (int i = 0; i < ae->n; i++) {
        int q = ae->q[i] >= 0 ? ae->q[i] : ae->any >= 0 ? ae->any : 0;
        if (q > bestq) { /* strictly: on a tie the earlier (preferred) one stays */
            best = i;
            bestq = q;
        }
    }
    if (best < 0)
        return -1;
    int idq = ae->identity >= 0 ? ae->identity : ae->any >= 0 ? ae->any : 1;
    return bestq >= idq ? best : -1;
}
