// The conversation log on the page: one list item per turn, "You" and "Assistant" lines.

function line(className, who) {
  const paragraph = document.createElement("p");
  paragraph.className = className;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who;
  const text = document.createElement("span");
  text.className = "text";
  paragraph.append(label, " ", text);
  return { paragraph, text };
}

/** Entries by turn number on the current connection; at most `kept` items stay in the list. */
export class ConversationLog {
  constructor(list, kept) {
    this.list = list;
    this.kept = kept;
    this.turns = new Map(); // turn number on this connection -> its entry
  }

  /** The turn's entry, added to the list if it has none: { item, you, assistant }. */
  entry(number) {
    let turn = this.turns.get(number);
    if (!turn) {
      const item = document.createElement("li");
      item.className = "turn";
      const you = line("you", "You");
      const assistant = line("assistant", "Assistant");
      item.append(you.paragraph, assistant.paragraph);
      this.list.append(item);
      while (this.list.children.length > this.kept) this.list.firstElementChild.remove();
      turn = { item, you: you.text, assistant: assistant.text };
      this.turns.set(number, turn);
    }
    return turn;
  }

  markInterrupted(number) {
    if (this.turns.has(number)) this.turns.get(number).item.classList.add("interrupted");
  }

  remove(number) {
    const turn = this.turns.get(number);
    if (turn) turn.item.remove();
    this.turns.delete(number);
  }

  /** Turn numbers start again at 1 on a new connection; the entries shown stay. */
  newConnection() {
    this.turns.clear();
  }

  clear() {
    this.turns.clear();
    this.list.replaceChildren();
  }
}
