/*
 * header_api.c - reads a C header and lists the functions it declares with
 * CVAE_API, so that the export checks are generated from the header and
 * never written by hand (tests/check_library.sh, tests/check_exports.sh).
 *
 *   header_api HEADER            one line per function: "name nparams"
 *   header_api --calls HEADER    a C99 program that calls every function
 *                                once by name with all arguments 0 (NULL
 *                                handles and pointers), checks that each one
 *                                returning a cvae_status refuses them, and
 *                                prints "N functions called"
 *
 * It tokenises the header as C does: comments, string and character
 * literals and preprocessor lines (with their continuations) are skipped, so
 * a CVAE_API inside a comment or a #define is not a declaration. A
 * declaration is CVAE_API followed by tokens up to the ';' at bracket depth
 * 0; whatever its return type (uint64_t, const char *, struct pointers) and
 * however it wraps over lines, its name is the first identifier (not a
 * keyword) right before a '(' and its parameters are that bracket's
 * top-level commas + 1 ((void) is none). A CVAE_API this reading cannot make sense of is an error
 * (exit 1), never skipped.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 256
#define MAX_TOKEN 128
#define MAX_FUNCS 2048

typedef struct func {
    char name[MAX_TOKEN];
    char returns[MAX_TOKEN * 2]; /* the return type, as written */
    int nparams;
    int line;
} func;

typedef struct lexer {
    const char *p;
    int line;
    int bol; /* at the beginning of a line (only blanks before) */
} lexer;

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Skips blanks, comments and preprocessor lines. */
static void skip_space(lexer *lx)
{
    for (;;) {
        const char *p = lx->p;
        if (*p == '\n') {
            lx->line++;
            lx->bol = 1;
            lx->p++;
        } else if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\f' || *p == '\v') {
            lx->p++;
        } else if (p[0] == '/' && p[1] == '*') {
            for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
                if (*p == '\n')
                    lx->line++;
            lx->p = *p ? p + 2 : p;
        } else if (p[0] == '/' && p[1] == '/') {
            while (*p && *p != '\n')
                p++;
            lx->p = p;
        } else if (*p == '#' && lx->bol) {
            /* A directive runs to the end of the line, continuations
             * included; comments inside it are skipped with it. */
            while (*p && *p != '\n') {
                if (p[0] == '\\' && p[1] == '\n') {
                    lx->line++;
                    p++;
                } else if (p[0] == '/' && p[1] == '*') {
                    for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
                        if (*p == '\n')
                            lx->line++;
                    if (*p)
                        p++;
                }
                if (*p)
                    p++;
            }
            lx->p = p;
        } else {
            return;
        }
    }
}

/* The next token into tok: an identifier or number, a string or character
 * literal (kept whole), or one punctuation character. 0 at the end. */
static int next_token(lexer *lx, char *tok)
{
    const char *p;
    size_t n = 0;
    skip_space(lx);
    p = lx->p;
    if (!*p)
        return 0;
    lx->bol = 0;
    if (isalnum((unsigned char)*p) || *p == '_') {
        while (isalnum((unsigned char)p[n]) || p[n] == '_')
            n++;
    } else if (*p == '"' || *p == '\'') {
        n = 1;
        while (p[n] && p[n] != *p && p[n] != '\n')
            n += p[n] == '\\' && p[n + 1] ? 2 : 1;
        if (p[n] == *p)
            n++;
    } else {
        n = 1;
    }
    lx->p = p + n;
    if (n >= MAX_TOKEN)
        n = MAX_TOKEN - 1;
    memcpy(tok, p, n);
    tok[n] = '\0';
    return 1;
}

static int is_ident(const char *t) { return isalpha((unsigned char)t[0]) || t[0] == '_'; }

/* Words that come before a '(' in a declaration without naming it. */
static int is_keyword(const char *t)
{
    static const char *const words[] = {
        "void",     "char",     "short",    "int",           "long",      "float",
        "double",   "signed",   "unsigned", "_Bool",         "const",     "volatile",
        "restrict", "struct",   "union",    "enum",          "static",    "inline",
        "extern",   "_Noreturn", "__attribute__", "__declspec", "__restrict", "__inline"};
    size_t i;
    for (i = 0; i < sizeof words / sizeof *words; i++)
        if (!strcmp(t, words[i]))
            return 1;
    return 0;
}

/* Reads the declaration after a CVAE_API into f. 0 with a message when it
 * is not one this reading understands. */
static int read_declaration(lexer *lx, const char *path, func *f)
{
    char toks[MAX_TOKENS][MAX_TOKEN];
    int n = 0, depth = 0, open = -1, i, commas = 0, inner = 0, ended = 0;
    f->line = lx->line;
    while (n < MAX_TOKENS && next_token(lx, toks[n])) {
        const char *t = toks[n];
        if (t[0] == '(' || t[0] == '[' || t[0] == '{') {
            depth++;
        } else if (t[0] == ')' || t[0] == ']' || t[0] == '}') {
            depth--;
        } else if (t[0] == ';' && depth == 0) {
            ended = 1;
            break;
        }
        n++;
    }
    /* The name: the first identifier, not a keyword, right before a '('
     * (so `int (*f(void))(int)` and __attribute__((x)) read right). */
    for (i = 1; ended && i < n && open < 0; i++)
        if (toks[i][0] == '(' && is_ident(toks[i - 1]) && !is_keyword(toks[i - 1]))
            open = i;
    if (open < 0) {
        fprintf(stderr, "%s:%d: cannot read the declaration after CVAE_API\n", path, f->line);
        return 0;
    }
    snprintf(f->name, sizeof f->name, "%s", toks[open - 1]);
    f->returns[0] = '\0';
    for (i = 0; i < open - 1; i++) {
        size_t len = strlen(f->returns);
        snprintf(f->returns + len, sizeof f->returns - len, "%s%s", i ? " " : "", toks[i]);
    }
    /* Parameters: top-level commas of the bracket that opens at `open`. */
    depth = 0;
    for (i = open; i < n; i++) {
        const char *t = toks[i];
        if (t[0] == '(' || t[0] == '[' || t[0] == '{') {
            depth++;
        } else if (t[0] == ')' || t[0] == ']' || t[0] == '}') {
            if (--depth == 0)
                break;
        } else if (depth == 1) {
            inner++;
            if (t[0] == ',')
                commas++;
        }
    }
    if (i == n) {
        fprintf(stderr, "%s:%d: %s: unbalanced brackets\n", path, f->line, f->name);
        return 0;
    }
    f->nparams = inner == 0 || (inner == 1 && !strcmp(toks[open + 1], "void")) ? 0 : commas + 1;
    return 1;
}

static void print_calls(const func *fs, int count)
{
    int i, j;
    printf("/* Generated by tests/header_api.c from the header: do not edit. Calls every\n"
           " * CVAE_API function once by name with all arguments 0. */\n"
           "#include <cvae.h>\n\n#include <stdio.h>\n\n"
           "int main(void)\n{\n    int calls = 0, accepted = 0;\n");
    for (i = 0; i < count; i++) {
        int status = !strcmp(fs[i].returns, "cvae_status");
        printf("    %s%s(", status ? "if (" : "(void)", fs[i].name);
        for (j = 0; j < fs[i].nparams; j++)
            printf("%s0", j ? ", " : "");
        if (status)
            printf(") == CVAE_OK) {\n"
                   "        printf(\"%s accepted all-zero arguments\\n\");\n"
                   "        accepted++;\n    }\n",
                   fs[i].name);
        else
            printf(");\n");
        printf("    calls++;\n");
    }
    printf("    printf(\"%%d functions called\\n\", calls);\n"
           "    return calls != %d || accepted != 0;\n}\n",
           count);
}

int main(int argc, char **argv)
{
    static func fs[MAX_FUNCS];
    const char *path;
    char tok[MAX_TOKEN], *text;
    int calls = argc == 3 && !strcmp(argv[1], "--calls"), count = 0, i, k;
    lexer lx;
    if (argc != 2 + calls) {
        fprintf(stderr, "usage: header_api [--calls] HEADER\n");
        return 2;
    }
    path = argv[1 + calls];
    if (!(text = read_file(path))) {
        fprintf(stderr, "header_api: cannot read %s\n", path);
        return 1;
    }
    lx.p = text;
    lx.line = 1;
    lx.bol = 1;
    while (next_token(&lx, tok)) {
        if (strcmp(tok, "CVAE_API") != 0)
            continue;
        if (count == MAX_FUNCS || !read_declaration(&lx, path, &fs[count])) {
            free(text);
            return 1;
        }
        for (k = 0; k < count; k++)
            if (!strcmp(fs[k].name, fs[count].name))
                break;
        if (k == count)
            count++;
    }
    free(text);
    if (count == 0) {
        fprintf(stderr, "header_api: %s declares no CVAE_API function\n", path);
        return 1;
    }
    if (calls) {
        print_calls(fs, count);
        return 0;
    }
    for (i = 0; i < count; i++)
        printf("%s %d\n", fs[i].name, fs[i].nparams);
    return 0;
}
