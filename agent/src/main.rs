fn main() {
    println!("meshd");
}
