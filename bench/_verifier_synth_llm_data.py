"""Word lists for bench/_verifier_synth_llm.py: meaning-preserving rewrites and meaning-changing
contrasts, written for the verifier's training pairs (none taken from an evaluation file; the test
tests/cache/test_verifier_data.py checks that no contrast here is a swap of tests/data/near_misses_fresh.jsonl).

Every list entry is a *family*: bench/_verifier_synth_llm.py holds out a fixed fifth of the families
(by a hash of their text) from training and generates the held-out evaluation pairs from them only.
"""

# fmt: off
# Openers of a request that ask the same thing ("how do I X" == "what's the way to X").
HOW_OPENERS = [
    "How do I {x}?", "How can I {x}?", "How should I {x}?", "How would I {x}?", "What's the best way to {x}?",
    "What is the right way to {x}?", "What steps do I need to take to {x}?", "Could you tell me how to {x}?",
    "Explain how to {x}.", "Show me how to {x}.", "I'd like to know how to {x}.", "how to {x}",
    "Walk me through how to {x}.", "Any tips on how to {x}?", "I need to {x}. How do I do that?",
    "What's the procedure to {x}?", "Is there a way to {x}?", "Can you explain how one can {x}?",
    "Help me figure out how to {x}.", "Guide me on how to {x}.", "I'm trying to {x} - how?",
    "What do I have to do to {x}?", "Tell me how to {x}.", "What's the easiest way to {x}?",
]
WHAT_OPENERS = [
    "What is {x}?", "Can you explain {x}?", "Explain {x}.", "Tell me about {x}.", "What exactly is {x}?",
    "Give me an explanation of {x}.", "I'd like to understand {x}.", "Describe {x}.", "What does {x} mean?",
    "Help me understand {x}.", "Could you describe {x} for me?", "{x} - what is it?", "Define {x}.",
    "What's {x} all about?", "Break down {x} for me.",
]
DO_OPENERS = [
    "{x}", "Please {x}.", "Can you {x}?", "Could you {x}?", "I need you to {x}.", "I'd like you to {x}.",
    "{X}, please.", "Would you {x}?", "Kindly {x}.", "Help me {x}.", "I want you to {x}.",
    "Could you please {x}?", "Go ahead and {x}.", "Your task: {x}.", "Are you able to {x}?",
]
SHOULD_OPENERS = [
    "Should I {x}?", "Is it a good idea to {x}?", "Would you recommend that I {x}?", "Do you think I should {x}?",
    "Is it wise to {x}?", "Does it make sense to {x}?", "Would it be smart to {x}?", "Am I right to {x}?",
]
WHY_OPENERS = [
    "Why {x}?", "What is the reason {x}?", "Can you explain why {x}?", "Explain why {x}.",
    "Do you know why {x}?", "What explains why {x}?", "I wonder why {x}.", "Why is it that {x}?",
]
# Neutral framing around a request: greetings, hedges, thanks.
PREFIXES = [
    "Hi! ", "Hey, ", "Quick question: ", "I have a question. ", "Sorry if this is basic, but ", "Hello, ",
    "Hi there, ", "I was wondering: ", "Question: ", "Hey there! ", "Good morning. ", "Not sure who to ask, but ",
    "This might be a dumb question, but ", "Can I ask something? ", "Hello! Quick one: ", "OK so ",
]
SUFFIXES = [
    " Thanks!", " Thanks in advance.", " Any help appreciated.", " Please help.", " Cheers.", " Thank you!",
    " I'd appreciate your help.", " Much appreciated.", " Thanks a lot.", " TIA.", " Appreciate it!",
]
# Interchangeable words and phrases (one group = one family).
SYNONYMS = [
    ["big", "large", "huge"], ["small", "little", "tiny"], ["quickly", "fast", "rapidly"],
    ["buy", "purchase"], ["car", "vehicle", "automobile"], ["doctor", "physician"], ["job", "position", "role"],
    ["start", "begin"], ["help", "assist"], ["fix", "repair"], ["choose", "pick", "select"],
    ["cost", "price"], ["explain", "describe", "clarify"], ["show", "demonstrate"], ["make", "create"],
    ["easy", "simple", "straightforward"], ["hard", "difficult", "tough"], ["important", "crucial", "essential"],
    ["use", "utilize", "employ"], ["get", "obtain", "acquire"], ["need", "require"], ["think", "believe"],
    ["maybe", "perhaps", "possibly"], ["also", "as well", "additionally"], ["often", "frequently"],
    ["problem", "issue"], ["mistake", "error"], ["answer", "response", "reply"], ["idea", "suggestion"],
    ["company", "firm", "business"], ["employee", "staff member", "worker"], ["boss", "supervisor"],
    ["kid", "child"], ["kids", "children"], ["house", "home"], ["movie", "film"], ["trip", "journey"],
    ["money", "funds", "cash"], ["rules", "regulations"], ["law", "legislation"], ["guess", "estimate"],
    ["check", "verify", "confirm"], ["write", "compose", "draft"], ["tell me", "let me know"],
    ["list", "enumerate"], ["summarize", "sum up", "give a summary of"], ["improve", "enhance", "boost"],
    ["reduce", "cut", "lower"], ["good", "decent", "solid"], ["great", "excellent", "fantastic"],
    ["best", "ideal", "optimal"], ["main", "key", "primary"], ["common", "typical", "usual"],
    ["method", "approach", "technique"], ["way", "manner"], ["goal", "objective", "aim"],
    ["benefits", "advantages", "upsides"], ["drawbacks", "disadvantages", "downsides"],
    ["example", "sample", "instance"], ["details", "specifics"], ["steps", "stages"], ["tips", "advice", "pointers"],
    ["happen", "occur"], ["allowed", "permitted"], ["enough", "sufficient"], ["whole", "entire"],
    ["recommend", "suggest"], ["understand", "grasp", "comprehend"], ["learn", "study"], ["keep", "retain"],
    ["find", "locate"], ["look for", "search for"], ["change", "modify", "alter"], ["end", "finish"],
    ["try", "attempt"], ["want", "wish"], ["deal with", "handle", "cope with"], ["talk to", "speak with"],
    ["ask", "inquire"], ["show up", "appear"], ["go up", "rise"], ["pick up", "collect"], ["set up", "configure"],
    ["figure out", "work out"], ["find out", "discover"], ["put off", "postpone"], ["look into", "investigate"],
    ["about", "regarding", "concerning"], ["because", "since"], ["but", "however"],
    ["around", "approximately", "roughly"], ["enough money", "sufficient funds"], ["right now", "currently"],
    ["a lot of", "many", "plenty of"], ["really", "truly"], ["completely", "entirely", "fully"],
    ["smart", "clever", "intelligent"], ["happy", "glad"], ["sad", "unhappy"], ["angry", "upset"],
    ["scared", "afraid", "frightened"], ["tired", "exhausted"], ["rich", "wealthy"], ["old", "elderly"],
    ["strange", "weird", "odd"], ["correct", "accurate"], ["wrong", "incorrect"], ["safe", "secure"],
    ["dangerous", "risky", "hazardous"], ["cheap", "inexpensive", "affordable"], ["expensive", "costly", "pricey"],
    ["clever", "smart"], ["pupil", "student"], ["teacher", "instructor"], ["illness", "sickness", "disease"],
    ["medicine", "medication"], ["symptoms", "signs"], ["insurance policy", "insurance plan", "coverage"],
    ["salary", "pay", "wages"], ["vacation", "holiday", "time off"], ["meeting", "call", "sync"],
    ["app", "application"], ["computer", "PC", "machine"], ["phone", "smartphone", "mobile"],
    ["website", "site", "web page"], ["program", "software"], ["bug", "defect"], ["folder", "directory"],
    ["error message", "error"], ["picture", "photo", "image"], ["story", "tale"], ["text", "passage"],
]
# Verbs whose swap reverses what is asked (no negation word).
REVERSALS = [
    ("add", "remove"), ("enable", "disable"), ("install", "uninstall"), ("upload", "download"),
    ("import", "export"), ("encrypt", "decrypt"), ("start", "stop"), ("open", "close"), ("show", "hide"),
    ("lock", "unlock"), ("buy", "sell"), ("increase", "decrease"), ("connect", "disconnect"),
    ("allow", "forbid"), ("include", "exclude"), ("push", "pull"), ("send", "receive"), ("lend", "borrow"),
    ("win", "lose"), ("save", "spend"), ("raise", "lower"), ("hire", "fire"), ("encode", "decode"),
    ("serialize", "deserialize"), ("zip", "unzip"), ("mute", "unmute"), ("hide", "unhide"), ("bold", "unbold"),
    ("sign in to", "sign out of"), ("log in to", "log out of"), ("turn on", "turn off"), ("plug in", "unplug"),
    ("check in", "check out"), ("warm up", "cool down"), ("scale up", "scale down"),
    ("enroll in", "withdraw from"), ("deposit", "withdraw"), ("import", "export"), ("arrive at", "depart from"),
    ("board", "get off"), ("pack", "unpack"), ("load", "unload"), ("wrap", "unwrap"), ("tie", "untie"),
    ("fold", "unfold"), ("lengthen", "shorten"), ("widen", "narrow"), ("heat", "cool"), ("fill", "empty"),
    ("attack", "defend"), ("praise", "criticize"), ("support", "oppose"), ("agree with", "disagree with"),
    ("trust", "distrust"), ("remember", "forget"), ("obey", "disobey"),
    ("assemble", "disassemble"), ("activate", "deactivate"), ("register", "deregister"), ("bookmark", "unbookmark"),
    ("star", "unstar"), ("favorite", "unfavorite"), ("enlarge", "shrink"),
    ("maximize", "minimize"), ("inherit", "bequeath"), ("import", "export"), ("ascend", "descend"),
    ("appreciate", "depreciate"), ("overestimate", "underestimate"),
    ("overpay", "underpay"), ("overcook", "undercook"), ("offer", "withdraw"), ("open", "shut"),
    ("grow", "shrink"), ("credit", "debit"), ("insert", "delete"), ("create", "delete"), ("write", "read"),
    ("encourage", "discourage"), ("qualify", "disqualify"), ("attract", "repel"),
    ("simplify", "complicate"), ("lighten", "darken"), ("brighten", "dim"), ("sharpen", "blur"),
    ("strengthen", "weaken"), ("hydrate", "dehydrate"), ("continue", "cancel"),
    ("schedule", "cancel"), ("book", "cancel"), ("renew", "cancel"), ("accept", "refuse"),
    ("admit", "deny"), ("confirm", "deny"), ("reward", "punish"), ("celebrate", "mourn"), ("invest in", "divest from"),
    ("lease", "buy"), ("rent", "own"), ("subscribe to", "cancel"), ("rise", "fall"), ("float", "sink"),
    ("ban", "legalize"), ("tax", "subsidize"), ("import", "manufacture"), ("expose", "conceal"),
    ("merge", "fork"), ("commit", "revert"), ("stage", "unstage"), ("indent", "dedent"), ("zoom", "pan"),
    ("compile", "decompile"), ("obfuscate", "deobfuscate"), ("minify", "beautify"), ("sort", "shuffle"),
    ("concatenate", "split"), ("flatten", "nest"), ("normalize", "denormalize"),
    ("upsize", "downsize"), ("upvote", "report"), ("follow", "mute"), ("approve", "flag"),
]
# Adjectives and adverbs whose swap changes the answer.
ANTONYMS = [
    ("best", "worst"), ("cheapest", "most expensive"), ("fastest", "slowest"), ("largest", "smallest"),
    ("highest", "lowest"), ("first", "last"), ("oldest", "newest"), ("longest", "shortest"),
    ("above", "below"), ("inside", "outside"), ("early", "late"), ("hot", "cold"), ("wet", "dry"),
    ("positive", "negative"), ("short-term", "long-term"), ("beginner", "advanced"), ("public", "private"),
    ("internal", "external"), ("input", "output"), ("upper", "lower"), ("left", "right"), ("maximum", "minimum"),
    ("synchronous", "asynchronous"), ("static", "dynamic"), ("mutable", "immutable"), ("local", "global"),
    ("horizontal", "vertical"), ("ascending", "descending"), ("legal", "illegal"), ("safe", "dangerous"),
    ("healthy", "unhealthy"), ("strong", "weak"), ("light", "heavy"), ("thick", "thin"),
    ("rich", "poor"), ("young", "old"), ("male", "female"), ("morning", "evening"), ("summer", "winter"),
    ("spring", "autumn"), ("north", "south"), ("east", "west"), ("urban", "rural"), ("formal", "informal"),
    ("optimistic", "pessimistic"), ("introvert", "extrovert"), ("acidic", "alkaline"), ("odd", "even"),
    ("domestic", "international"), ("online", "offline"), ("wired", "wireless"), ("manual", "automatic"),
    ("natural", "artificial"), ("organic", "synthetic"), ("raw", "cooked"), ("fresh", "frozen"),
    ("full-time", "part-time"), ("permanent", "temporary"), ("fixed", "variable"), ("gross", "net"),
    ("pre-tax", "after-tax"), ("primary", "secondary"), ("major", "minor"), ("overweight", "underweight"),
    ("increasing", "decreasing"), ("more", "less"), ("most", "least"), ("always", "never"), ("all", "none"),
    ("with", "without"), ("easier", "harder"), ("better", "worse"), ("faster", "slower"), ("cheaper", "pricier"),
    ("higher", "lower"), ("bigger", "smaller"), ("stronger", "weaker"), ("safer", "riskier"),
    ("advantages", "disadvantages"), ("pros", "cons"), ("causes", "effects"),
    ("symptoms", "treatments"), ("strengths", "weaknesses"), ("similarities", "differences"),
    ("arguments for", "arguments against"), ("supporters", "critics"), ("winners", "losers"),
    ("front end", "back end"), ("client", "server"), ("frontend", "backend"), ("parent", "child"),
    ("source", "destination"), ("sender", "recipient"),
    ("lender", "borrower"), ("plaintiff", "defendant"), ("teacher", "student"),
]
AUDIENCES = [
    "a ten-year-old", "a teenager", "a college student", "a grad student", "a beginner",
    "an expert", "a senior developer", "a junior developer", "a non-technical manager", "a CEO", "an investor",
    "my grandmother", "my grandfather", "my wife", "my girlfriend", "my boyfriend",
    "my best friend", "my coworkers", "my boss", "my landlord", "my neighbor", "my students", "my kids",
    "a customer", "a new hire", "a job recruiter", "a doctor", "a nurse", "a lawyer", "a judge", "a police officer",
    "a scientist", "a historian", "a farmer", "a chef", "a pilot", "a musician", "an artist", "a designer",
    "a product manager", "a data scientist", "a sysadmin", "a startup founder", "a small business owner",
    "a retiree", "an immigrant", "a tourist", "a patient", "a caregiver", "a veteran", "a first-time homebuyer",
    "a freelancer", "an accountant", "an engineer", "a high school class", "an elderly person",
    "a vegan", "a diabetic", "an athlete", "a dog owner", "a cat owner", "a gamer",
]
AUDIENCE_FRAMES = [" for {a}", " to {a}", ", aimed at {a}", " (for {a})", " in a way {a} would understand",
                   " so that {a} can follow it", ", written for {a}"]
FORMATS = [
    "as a table", "as a bulleted list", "as a numbered list", "in JSON", "in YAML", "in CSV", "in XML",
    "in Markdown", "as HTML", "as a poem", "as a haiku", "as a limerick", "as a song", "as a rap", "as a tweet",
    "as a LinkedIn post", "as an email", "as a text message", "as a memo", "as a one-liner", "in one sentence",
    "in two sentences", "in a single paragraph", "in 50 words", "in 200 words", "in 1000 words",
    "as a flowchart", "as pseudocode", "as a shell script", "as a SQL query", "as a regex", "as a mind map",
    "as a story", "as a dialogue", "as a script", "as an outline", "as a FAQ",
    "as a checklist", "as a timeline", "as a quiz", "as flashcards", "as a press release", "as a speech",
    "in the style of Shakespeare", "in the style of a pirate", "in a formal tone", "in a funny tone",
    "in a sarcastic tone", "in plain English", "in simple words", "in technical terms", "with emojis",
    "without jargon", "as a slide outline", "as a cheat sheet", "as a Python dictionary", "as a UML diagram",
]
HUMAN_LANGUAGES = [
    "English", "French", "German", "Spanish", "Russian", "Chinese",
    "Korean", "Arabic", "Hindi", "Bengali", "Urdu", "Turkish", "Polish", "Ukrainian", "Greek", "Swedish",
    "Norwegian", "Danish", "Finnish", "Czech", "Hungarian", "Romanian", "Thai", "Indonesian", "Malay",
    "Tagalog", "Persian", "Tamil", "Telugu", "Punjabi", "Catalan", "Basque", "Irish", "Welsh", "Latin",
]
CODE_LANGUAGES = [
    "Python", "TypeScript", "Java", "C", "C++", "C#", "Go", "Rust", "Ruby", "PHP", "Kotlin",
    "Swift", "Scala", "R", "Bash", "Dart", "Objective-C", "F#", "OCaml", "Erlang", "Zig", "Nim", "Groovy",
    "Visual Basic", "Assembly", "Prolog", "Racket", "Crystal", "Solidity", "SQL", "VBA",
    "React", "Vue", "Angular", "Svelte", "Django", "Flask", "Rails", "Laravel", "Express", "Next.js",
    "NumPy", "pandas", "PyTorch", "TensorFlow", "Keras", "scikit-learn", "Spark", "Kafka", "Redis", "MongoDB",
    "MySQL", "SQLite", "Cassandra", "Docker", "Kubernetes", "Ansible", "Jenkins", "GitHub Actions", "GitLab CI",
    "AWS", "Azure", "GCP", "Heroku", "Vercel", "Netlify", "Unity", "Unreal Engine", "Godot", "Excel",
    "Google Sheets", "Notion", "Jira", "Trello", "Figma", "Photoshop", "Blender", "WordPress", "Shopify",
]
# Qualifiers that narrow a request by a few words (appended at the end).
QUALIFIERS = [
    "in the morning", "on weekends", "in winter", "in summer", "for free", "on a budget",
    "without a credit card", "without losing data", "without root access", "without internet", "offline",
    "on Android", "on iOS", "on a Mac", "on Windows", "on Linux", "on a Chromebook", "in the browser",
    "from the command line", "with a GUI", "in bulk", "one at a time", "permanently",
    "automatically", "manually", "remotely", "in production", "in a Docker container", "on a server",
    "for a small business", "for a large company", "for a nonprofit", "for a startup", "in the EU",
    "in Australia", "in India", "in the UK", "in Texas", "in New York",
    "as a student", "as a foreigner", "as a contractor", "as a minor", "after retirement", "during pregnancy",
    "after surgery", "with diabetes", "with a bad knee", "with kids", "with a dog", "alone",
    "in under an hour", "in one day", "in a week", "before the deadline", "after hours", "on a plane",
    "in an apartment", "in a small kitchen", "without an oven", "without sugar", "without eggs", "gluten-free",
    "for the first time", "again", "faster", "safely", "legally", "anonymously", "in real time", "in parallel",
    "in place", "case-insensitively", "by date", "by size", "by key",
]
# One adjective inserted before a noun narrows what is asked.
MODIFIERS = [
    "large", "small", "free", "paid", "local", "remote", "shared", "private", "hidden", "empty",
    "daily", "weekly", "monthly", "annual", "chronic", "acute", "used", "deleted", "encrypted", "nested",
    "duplicate", "missing", "broken", "corrupted", "unused", "inactive", "expired", "pending", "unpaid",
    "overdue", "foreign", "domestic", "senior", "junior", "part-time", "electric", "manual", "vintage",
    "organic", "frozen", "canned", "raw", "spicy", "vegan", "wireless", "portable", "external", "internal",
    "temporary", "secondary", "residential", "commercial", "federal", "state", "medical", "legal", "digital",
]
ENTITY_CLASSES = {
    "company": ["Google", "Apple", "Microsoft", "Amazon", "Meta", "Netflix", "Tesla", "IBM", "Oracle", "Intel",
                "Samsung", "Sony", "Nike", "Adidas", "Toyota", "Ford", "Uber", "Airbnb", "Spotify", "Twitter",
                "Salesforce", "Adobe", "Zoom", "Slack", "Dropbox", "PayPal", "Stripe", "Shopify", "Walmart",
                "Costco", "Target", "IKEA", "Starbucks", "McDonald's", "Coca-Cola", "Pepsi", "Visa", "Mastercard"],
    "country": ["France", "Germany", "Spain", "Italy", "Japan", "China", "India", "Brazil", "Canada", "Mexico",
                "Egypt", "Kenya", "Nigeria", "Peru", "Chile", "Austria", "Australia", "Sweden", "Norway", "Poland",
                "Greece", "Turkey", "Vietnam", "Thailand", "Argentina", "Portugal", "Ireland", "Iceland",
                "Switzerland", "Belgium", "Netherlands", "Denmark", "Finland", "Colombia", "Morocco", "Nepal",
                "Indonesia", "Pakistan", "Bangladesh", "Philippines", "Malaysia", "Singapore", "Israel", "Russia"],
    "city": ["Paris", "London", "Berlin", "Madrid", "Rome", "Tokyo", "Beijing", "Delhi", "Sydney", "Toronto",
             "Chicago", "Boston", "Seattle", "Miami", "Vienna", "Prague", "Lisbon", "Dublin", "Oslo", "Cairo",
             "Nairobi", "Lima", "Bangkok", "Seoul", "Istanbul", "Amsterdam", "Munich", "Denver", "Austin",
             "Atlanta", "Dallas", "Houston", "Phoenix", "Portland", "Vancouver", "Montreal", "Melbourne",
             "Barcelona", "Milan", "Zurich", "Stockholm", "Copenhagen", "Helsinki", "Warsaw", "Budapest"],
    "person": ["Einstein", "Newton", "Shakespeare", "Mozart", "Beethoven", "Picasso", "Plato",
               "Aristotle", "Kant", "Nietzsche", "Marx", "Freud", "Lincoln", "Napoleon", "Gandhi", "Churchill",
               "Tesla", "Edison", "Curie", "Galileo", "Socrates", "Confucius", "Dickens", "Tolkien", "Orwell",
               "Hemingway", "Austen", "Keynes", "Adam Smith", "Hobbes", "Locke", "Rousseau", "Machiavelli"],
    "product": ["iPhone", "iPad", "MacBook", "Pixel", "Galaxy", "Kindle", "PlayStation", "Xbox", "Switch",
                "AirPods", "Apple Watch", "Fitbit", "Roomba", "Alexa", "ChatGPT", "Gmail", "Outlook", "Chrome",
                "Firefox", "Safari", "Edge", "WhatsApp", "Telegram", "Signal", "Instagram", "TikTok", "YouTube",
                "LinkedIn", "Reddit", "Discord", "Zoom", "Teams", "Excel", "Word", "PowerPoint", "Photoshop"],
    "drug": ["aspirin", "ibuprofen", "acetaminophen", "amoxicillin", "lisinopril", "atorvastatin", "omeprazole",
             "sertraline", "prednisone", "insulin", "warfarin", "levothyroxine", "albuterol", "gabapentin",
             "losartan", "naproxen", "cetirizine", "loratadine", "melatonin", "caffeine", "penicillin"],
    "animal": ["dog", "cat", "horse", "rabbit", "hamster", "parrot", "goldfish", "turtle", "snake", "cow",
               "pig", "chicken", "sheep", "goat", "lion", "tiger", "elephant", "dolphin", "shark", "whale"],
    "food": ["rice", "pasta", "bread", "eggs", "chicken", "salmon", "tofu", "beans", "lentils", "potatoes",
             "broccoli", "spinach", "kale", "apples", "bananas", "oranges", "avocado", "cheese", "yogurt", "oats",
             "quinoa", "almonds", "peanuts", "coffee", "tea", "wine", "beer", "chocolate", "honey", "sugar"],
    "subject": ["physics", "chemistry", "biology", "math", "history", "geography", "economics", "psychology",
                "sociology", "philosophy", "literature", "statistics", "calculus", "algebra", "geometry",
                "astronomy", "geology", "linguistics", "anthropology", "political science", "accounting"],
    "finance": ["401k", "Roth IRA", "HSA", "529 plan", "index fund", "ETF", "mutual fund", "bond",
                "stock", "CD", "savings account", "checking account", "credit card", "debit card", "mortgage",
                "car loan", "student loan", "personal loan", "annuity", "pension", "Bitcoin", "Ethereum"],
}
# Question words whose swap asks a different question about the same thing.
WH_SWAPS = [("How", "Why"), ("How", "When"), ("Why", "When"), ("Where", "When"), ("What", "Why"),
            ("Who", "When"), ("How", "Where"), ("Which", "Why"), ("How much", "How many times"),
            ("How long", "How often"), ("How far", "How long"), ("How old", "How tall")]
# Unit families (swapping inside a family changes the question).
UNITS = [["km", "miles", "meters", "feet"], ["kg", "pounds", "grams", "ounces"], ["liters", "gallons", "cups"],
         ["Celsius", "Fahrenheit", "Kelvin"], ["hours", "minutes", "days", "weeks", "months", "years"],
         ["dollars", "euros", "pounds sterling", "yen"], ["MB", "GB", "TB"], ["mph", "km/h"],
         ["inches", "centimeters", "millimeters"], ["calories", "kilojoules"], ["percent", "basis points"]]
# fmt: on
